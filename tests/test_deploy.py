"""The deployment files: the Dockerfile, docker-compose.yml (with HAProxy) and the Kubernetes manifests.

Docker cannot run here, so the files are checked as text and against schemas: the compose file with
`docker compose config` (or `docker-compose config`) when installed and with the compose-spec JSON schema that
check-jsonschema ships, the manifests with kubernetes-validate's bundled schemas and `kubectl kustomize`, the
HAProxy config with `haproxy -c`; each tool's check skips when the tool is absent. The rest holds everywhere:
non-root image, health checks and probes on real routes, no torch or CUDA wheel reachable from the runtime
requirements, and every variable a real setting, with the configs loading as the containers would load them.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import tomllib
import typing
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel

from router.errors import ConfigError
from router.settings import CONFIG_VARIABLE, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY, K8S = ROOT / "deploy", ROOT / "deploy" / "k8s"
DEPLOY_FILES = [ROOT / "Dockerfile", ROOT / "docker-compose.yml", ROOT / ".env.example", DEPLOY / "config.yaml",
                DEPLOY / "haproxy.cfg", DEPLOY / "constraints-runtime.txt", *sorted(K8S.glob("*.yaml"))]
FORBIDDEN = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton|onnxruntime-gpu|nvidia-[a-z0-9-]+)$")
"""Distributions the runtime image must never contain: torch and the CUDA wheels."""
SECRET_VALUES = {"anthropic-api-key": "sk-ant-test", "openai-api-key": "sk-test",
                 "database-url": "postgresql://cf:pw@db:5432/cascadeflow", "redis-url": "redis://:pw@redis:6379/0"}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuations joined, ARGs before the first FROM expanded), per stage."""
    lines: list[str] = []
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        else:
            lines.append(raw.strip())
    arguments: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "ARG" and not stages and "=" in rest:
            name, _, value = rest.partition("=")
            arguments[name] = value
        if keyword.upper() == "FROM":
            rest = re.sub(r"\$\{(\w+)\}", lambda match: arguments.get(match.group(1), match.group(0)), rest)
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), rest))
    return stages


def instruction(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for name, rest in stage if name == keyword]


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), f"not the exec form: {text}"
    return [str(item) for item in value]


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, and $$ for a dollar."""
    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if environ.get(name):
            return environ[name]
        if operator == "?":
            raise AssertionError(f"{name} is required: {argument}")
        return argument or ""

    return re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", value, text).replace("$$", "$")


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def compose(environ: dict[str, str] | None = None) -> dict[str, Any]:
    text = (ROOT / "docker-compose.yml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(interpolate(text, env_example() if environ is None else environ))
    return loaded


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
            if doc and doc.get("kind") != "Kustomization"]


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in manifests() if doc["kind"] == kind]
    return found


def proxy_container() -> dict[str, Any]:
    (container,) = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return typing.cast(dict[str, Any], container)


def k8s_environment() -> dict[str, str]:
    """The proxy container's variables, with the Secret's keys given test values."""
    values: dict[str, str] = {}
    for entry in proxy_container()["env"]:
        if "value" in entry:
            values[entry["name"]] = entry["value"]
        elif entry["valueFrom"]["secretKeyRef"]["key"] in SECRET_VALUES:
            values[entry["name"]] = SECRET_VALUES[entry["valueFrom"]["secretKeyRef"]["key"]]
    return values


@cache
def routes() -> frozenset[str]:
    """The GET paths the proxy serves besides the LLM endpoints."""
    from router.api import meta

    return frozenset(getattr(route, "path", "") for route in meta.router.routes)


def url_path(text: str) -> str:
    found = re.search(r"https?://[^/\s'\"]+(/[^\s'\"]*)", text)
    assert found is not None, f"no URL in {text}"
    return found.group(1)


def test_the_image_is_multi_stage_slim_non_root_and_checks_its_health() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert all(re.match(r"python:3\.11-slim", instruction(stage, "FROM")[0]) for stage in stages)
    final = stages[-1]
    user = instruction(final, "USER")[-1].split(":")[0]
    assert user not in ("root", "0") and (user.isdigit() and int(user) >= 1000)
    assert [rest for name, rest in final if name in ("RUN", "USER")][-1] == instruction(final, "USER")[-1]
    (healthcheck,) = instruction(final, "HEALTHCHECK")
    assert url_path(healthcheck) == "/health" and "/health" in routes() and "--start-period" in healthcheck
    assert exec_form(instruction(final, "ENTRYPOINT")[0]) == ["cascadeflow"]
    for stage in stages:
        for rest in instruction(stage, "COPY"):
            if "--from" not in rest:
                assert all((ROOT / source).exists() for source in rest.split()[:-1]), rest


def test_the_image_installs_no_extras_under_the_runtime_constraints() -> None:
    installs = [rest for stage in dockerfile_stages() for rest in instruction(stage, "RUN") if "pip install" in rest]
    assert installs and all("--constraint deploy/constraints-runtime.txt" in rest for rest in installs)
    assert all(not re.search(r"\.\[", rest) and not re.search(r"\btorch\b", rest.split("&&")[0]) for rest in installs)
    assert any("grep -iE" in rest and "nvidia-" in rest and "exit 1" in rest for rest in installs)
    lines = [line.strip() for line in (DEPLOY / "constraints-runtime.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    unresolvable = {canonicalize_name(Requirement(line).name) for line in lines
                    if str(Requirement(line).specifier) == "<0"}
    assert unresolvable == {canonicalize_name(Requirement(line).name) for line in lines}, "every line allows nothing"
    assert {"torch", "triton", "nvidia-cudnn-cu12", "nvidia-cublas-cu12"} <= unresolvable


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_no_torch_or_cuda_is_reachable_from_the_runtime_requirements() -> None:
    direct = [str(requirement) for requirement in runtime_requirements()
              if FORBIDDEN.match(canonicalize_name(requirement.name))]
    assert direct == [], "torch belongs in an extra (train), never in the runtime dependencies"
    paths: dict[str, list[str]] = {}
    queue = [(requirement, [requirement.name]) for requirement in runtime_requirements()]
    while queue:  # through the installed distributions' metadata: what `pip install .` would pull in
        requirement, path = queue.pop()
        name = canonicalize_name(requirement.name)
        if name in paths or (requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})):
            continue
        paths[name] = path
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        queue += [(Requirement(text), [*path, Requirement(text).name]) for text in requires]
    reached = {name: " -> ".join(path) for name, path in paths.items() if FORBIDDEN.match(name)}
    assert reached == {}, "the runtime image would fail to build (deploy/constraints-runtime.txt)"


def test_the_image_refuses_to_start_open_and_starts_with_keys_required() -> None:
    final = dockerfile_stages()[-1]
    environment = dict(re.findall(r"(\w+)=(\S+)", " ".join(instruction(final, "ENV"))))
    command = exec_form(instruction(final, "CMD")[0])
    config = command[command.index("--config") + 1]
    assert environment[CONFIG_VARIABLE] == config and any(config in rest for rest in instruction(final, "COPY"))
    host = command[command.index("--host") + 1]
    assert host == "0.0.0.0"
    image = {**environment, "CASCADEFLOW_DATA_DIR": "/nonexistent/state"}
    with pytest.raises(ConfigError, match="not loopback"):  # no keys, no opt-in: no start
        load_settings(DEPLOY / "config.yaml", environ=image, server={"host": host})
    keyed = load_settings(DEPLOY / "config.yaml", environ={**image, "CASCADEFLOW_AUTH__MODE": "api_key"},
                          server={"host": host})
    assert keyed.auth.requires_keys and keyed.auth.store is not None and keyed.auth.store.startswith("sqlite:///")
    opened = load_settings(DEPLOY / "config.yaml", environ={**image, "CASCADEFLOW_AUTH__MODE": "open"},
                           server={"host": host})  # the explicit opt-in the Dockerfile names
    assert opened.auth.mode == "open" and not opened.auth.requires_keys


def test_the_configmap_carries_the_image_config() -> None:
    assert manifest("ConfigMap")["data"]["config.yaml"] == (DEPLOY / "config.yaml").read_text()
    assert proxy_container()["args"] == compose()["services"]["proxy"]["command"]


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_replicas_load_the_config_with_shared_state_and_keys_required(where: str) -> None:
    keys = {"ANTHROPIC_API_KEY": "sk-ant-test", "OPENAI_API_KEY": "sk-test"}
    environ = compose({**env_example(), **keys})["services"]["proxy"]["environment"] if where == "compose" \
        else k8s_environment()
    for name in re.findall(r"\$\{(\w+)", (DEPLOY / "config.yaml").read_text()):
        assert name in environ, f"{name} is referenced by deploy/config.yaml but not set for the {where} replicas"
    settings = load_settings(DEPLOY / "config.yaml", environ={**environ, "CASCADEFLOW_DATA_DIR": "/nonexistent"},
                             server={"host": "0.0.0.0"})
    assert settings.auth.mode == "api_key" and settings.auth.requires_keys
    assert settings.outcome_log.url.startswith("postgresql://") and settings.auth.store == settings.outcome_log.url
    spend = getattr(settings, "spend", None)
    assert spend is None or spend.url == settings.outcome_log.url
    assert settings.auth.store == settings.database.url and (settings.state.redis_url or "").startswith("redis://")
    assert settings.auth.limiter_redis_url == settings.state.redis_url and "standard" in settings.tiers
    assert settings.cache.mode == "redis" and settings.cache.redis_url == settings.auth.limiter_redis_url
    assert settings.providers["anthropic"].api_key is not None


def setting_exists(variable: str) -> bool:
    """Whether a CASCADEFLOW_* variable names a setting (a leaf, or a list or mapping set whole)."""
    if variable == CONFIG_VARIABLE:
        return True
    model: type[BaseModel] = Settings
    parts = variable.removeprefix("CASCADEFLOW_").lower().split("__")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        nested = [kind for kind in (field.annotation, *typing.get_args(field.annotation))
                  if isinstance(kind, type) and issubclass(kind, BaseModel)]
        if not nested:
            return index == len(parts) - 1
        model = nested[0]
    return True


def test_every_variable_in_the_deployment_files_is_a_setting() -> None:
    found = {name for path in DEPLOY_FILES for name in re.findall(r"\bCASCADEFLOW_[A-Z0-9_]*[A-Z0-9]",
                                                                   path.read_text())}
    assert {"CASCADEFLOW_AUTH__MODE", "CASCADEFLOW_DATABASE__URL", "CASCADEFLOW_STATE__REDIS_URL"} <= found
    assert sorted(name for name in found if not setting_exists(name)) == []
    assert not setting_exists("CASCADEFLOW_AUTH__NO_SUCH_KEY") and not setting_exists("CASCADEFLOW_STATEX")


def test_probes_and_health_checks_point_at_real_routes() -> None:
    container = proxy_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    services = compose()["services"]
    assert url_path(" ".join(services["proxy"]["healthcheck"]["test"])) == "/health"
    haproxy = re.search(r"http-check send meth GET uri (\S+)", (DEPLOY / "haproxy.cfg").read_text())
    assert haproxy is not None and haproxy.group(1) == "/ready"
    assert {"/health", "/ready"} <= routes()
    for name in ("redis", "postgres", "lb", "proxy"):
        assert services[name]["healthcheck"]["test"], name
    assert {dependency["condition"] for dependency in services["proxy"]["depends_on"].values()} == {
        "service_healthy"} and set(services["proxy"]["depends_on"]) == {"redis", "postgres"}
    assert services["lb"]["depends_on"]["proxy"]["condition"] == "service_healthy"
    assert "ports" not in services["proxy"], "replicas are reached through the load balancer only"


def test_no_secret_in_the_files() -> None:
    for path in DEPLOY_FILES:
        text = path.read_text()
        assert not re.search(r"sk-(ant-)?[A-Za-z0-9_-]{20,}", text), path
        assert "../" not in text, f"{path} names a file outside the repository"
    assert all(value.startswith("change-me") or value in ("", "3", "0.1.0", "127.0.0.1:8000")
               for value in env_example().values())
    assert "kind: Secret" not in "".join(path.read_text() for path in K8S.glob("*.yaml"))
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_compose_config_validates() -> None:
    if shutil.which("docker") and run(["docker", "compose", "version"]).returncode == 0:
        command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = run([*command, "--env-file", ".env.example", "-f", "docker-compose.yml", "config", "-q"])
    assert result.returncode == 0, result.stderr


def test_compose_file_matches_the_compose_spec_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    resources = pytest.importorskip("check_jsonschema.builtin_schemas")
    from importlib.resources import files

    schema = json.loads(files(resources).joinpath("vendor", "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(compose())]
    assert errors == []
    broken = compose()
    broken["services"]["proxy"]["healthcheck"]["intervall"] = "5s"
    assert not validator.is_valid(broken), "the schema check would catch a misspelt key"


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    versions = ["1.30.0", kubernetes_validate.latest_version()]
    for document in manifests():
        for version in versions:
            kubernetes_validate.validate(document, version, strict=True)
    broken = manifest("Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/ready"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, versions[0], strict=True)
    assert {document["kind"] for document in manifests()} >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "PodDisruptionBudget"}


def test_kustomize_renders_every_manifest() -> None:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    result = run(["kubectl", "kustomize", "deploy/k8s"])
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(doc["kind"] for doc in rendered) == sorted(doc["kind"] for doc in manifests())
    (deployment,) = [doc for doc in rendered if doc["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].startswith("cascadeflow-router:")


def test_haproxy_config_is_valid() -> None:
    if not shutil.which("haproxy"):
        pytest.skip("haproxy is not installed")
    result = run(["haproxy", "-c", "-f", "deploy/haproxy.cfg"])
    assert result.returncode == 0, result.stdout + result.stderr
