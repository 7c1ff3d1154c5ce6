"""Settings: YAML with interpolation, CASCADEFLOW_* overrides, validation naming the key path, CLI config check."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from router.cli import main
from router.config_sources import interpolate
from router.errors import ConfigError
from router.settings import CascadeRule, Settings, load_settings

SEED = """
server: {host: 127.0.0.1, port: 8000}
providers:
  anthropic: {base_url: https://api.anthropic.com, api_key: ${ANTHROPIC_API_KEY}}
  openai:    {base_url: https://api.openai.com/v1, api_key: ${OPENAI_API_KEY}}
  groq:      {kind: openai, base_url: https://api.groq.com/openai/v1, api_key: ${GROQ_API_KEY:-}}
cascade_rules:
  - {request_model: claude-opus-4-8, draft_model: claude-haiku-4-5,
     verifier_model: claude-opus-4-8, quality_threshold: 0.7}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_seed_config_loads_with_interpolation(tmp_path: Path) -> None:
    env = {"ANTHROPIC_API_KEY": "sk-ant-1", "OPENAI_API_KEY": "sk-oai-2"}
    settings = load_settings(write(tmp_path, SEED), environ=env)
    anthropic_key = settings.providers["anthropic"].api_key
    assert anthropic_key is not None and anthropic_key.get_secret_value() == "sk-ant-1"
    assert settings.providers["groq"].api_key is None
    assert settings.provider_kind("groq") == "openai"
    assert settings.cascade_rules[0].quality_threshold == 0.7
    assert "sk-ant-1" not in repr(settings)


def test_missing_variable_names_the_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"providers\.anthropic\.api_key: environment variable ANTHROPIC_API_KEY"):
        load_settings(write(tmp_path, SEED), environ={"OPENAI_API_KEY": "x"})


def test_interpolation_default_and_nesting() -> None:
    tree = {"a": ["${X:-fallback}", {"b": "pre-${Y}-post"}], "n": 3}
    assert interpolate(tree, {"Y": "mid"}) == {"a": ["fallback", {"b": "pre-mid-post"}], "n": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {port: 99999}", r"server\.port"),
        ("providers: {x: {base_url: ftp://nope}}", r"providers\.x"),
        ("cascade_rules: [{request_model: a, draft_model: b, verifier_model: c, quality_threshold: 2}]",
         r"cascade_rules\.0\.quality_threshold"),
        ("models: [{match: 'x-*', provider: nowhere}]", r"models\.0\.provider"),
        ("auth: {keys: [{key_sha256: plaintext, user: bob}]}", r"auth\.keys\.0\.key_sha256"),
        ("serverr: {}", r"serverr"),
        ("- just a list", r"top level must be a mapping"),
    ],
)
def test_invalid_config_names_key_path(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(write(tmp_path, text), environ={})


def test_defaults_without_file_take_keys_from_environment() -> None:
    settings = load_settings(None, environ={"ANTHROPIC_API_KEY": "k"})
    assert set(settings.providers) == {"anthropic", "openai"}
    key = settings.providers["anthropic"].api_key
    assert key is not None and key.get_secret_value() == "k"
    assert settings.providers["openai"].api_key is None


def test_config_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "server: {port: 8123}\n")
    assert main(["config", "check", str(good)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: -1}\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "server.port" in capsys.readouterr().err


def test_keys_hash_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "hash", "secret"]) == 0
    assert capsys.readouterr().out.strip() == "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"


def test_environment_variables_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 8000, host: 0.0.0.0}\nauth: {mode: open}\ncache: {enabled: false}\n")
    env = {"CASCADEFLOW_SERVER__PORT": "9001", "CASCADEFLOW_CACHE__ENABLED": "true",
           "CASCADEFLOW_CONFIG": "/elsewhere/config.yaml", "cascadeflow_server__log_level": "debug"}
    settings = load_settings(path, environ=env)
    assert (settings.server.port, settings.server.host, settings.server.log_level) == (9001, "0.0.0.0", "debug")
    assert settings.cache.enabled is True


def test_explicit_overrides_beat_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 8000}\n")
    settings = load_settings(path, environ={"CASCADEFLOW_SERVER__PORT": "9001"},
                             server={"port": 9002, "host": None})
    assert (settings.server.port, settings.server.host) == (9002, "127.0.0.1")


def test_a_given_environ_is_the_only_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADEFLOW_SERVER__PORT", "9999")
    assert load_settings(write(tmp_path, "auth: {}\n"), environ={}).server.port == 8000
    assert Settings().server.port == 8000, "settings built directly take only the given values"
    assert load_settings(write(tmp_path, "auth: {}\n")).server.port == 9999, "os.environ without an environ"


def test_environment_values_nest_index_and_decode(tmp_path: Path) -> None:
    path = write(tmp_path, SEED)
    env = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "CASCADEFLOW_PROVIDERS__GROQ__API_KEY": "sk-groq",
           "CASCADEFLOW_CASCADE_RULES__0__QUALITY_THRESHOLD": "0.9", "CASCADEFLOW_CACHE__DIRECTORY": "null",
           "CASCADEFLOW_AUTH__KEYS": '[{"key_sha256": "' + "ab" * 32 + '", "user": "bob"}]',
           "CASCADEFLOW_PROVIDERS__OPENAI__API_KEY": "12345"}
    settings = load_settings(path, environ=env)
    groq, openai = settings.providers["groq"].api_key, settings.providers["openai"].api_key
    assert groq is not None and groq.get_secret_value() == "sk-groq"
    assert openai is not None and openai.get_secret_value() == "12345", "digits stay text for a text setting"
    assert settings.providers["groq"].base_url == "https://api.groq.com/openai/v1"
    assert settings.cascade_rules[0].quality_threshold == 0.9
    assert settings.cache.directory is None
    assert [key.user for key in settings.auth.keys] == ["bob"]


def test_environment_keys_of_the_default_providers() -> None:
    settings = load_settings(None, environ={"CASCADEFLOW_PROVIDERS__OPENAI__API_KEY": "sk-env"})
    key = settings.providers["openai"].api_key
    assert key is not None and key.get_secret_value() == "sk-env"
    assert settings.providers["openai"].base_url == "https://api.openai.com/v1"


def test_a_bad_environment_value_names_the_key_and_the_variables(tmp_path: Path) -> None:
    env = {"CASCADEFLOW_SERVER__PORT": "abc", "CASCADEFLOW_REQUIRE_E2E": "1", "CASCADEFLOW_CONFIG": "x.yaml"}
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, "server: {port: 8000}\n"), environ=env)
    assert str(raised.value).endswith("(CASCADEFLOW_* variables set: CASCADEFLOW_SERVER__PORT)")
    assert str(raised.value).startswith("server.port: ")
    with pytest.raises(ConfigError, match=r"cascade_rules\.3: no such item"):
        load_settings(write(tmp_path, SEED), environ={"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o",
                                                      "CASCADEFLOW_CASCADE_RULES__3__QUALITY_THRESHOLD": "0.1"})


def test_default_routes_name_only_configured_providers(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: {openai: {base_url: 'https://api.openai.com/v1'}}\n")
    settings = load_settings(path, environ={})
    assert {route.provider for route in settings.models} == {"openai"}
    assert [route.match for route in settings.models] == ["gpt-*", "chatgpt-*", "o[0-9]*"]
    only_anthropic = Settings(providers={"anthropic": {"base_url": "https://api.anthropic.com"}})
    assert [route.match for route in only_anthropic.models] == ["claude-*"]
    assert Settings().models == []
    explicit = "providers: {openai: {base_url: 'https://x/v1'}}\nmodels: [{match: 'claude-*', provider: anthropic}]\n"
    with pytest.raises(ConfigError, match=r"models\.0\.provider: unknown provider 'anthropic'"):
        load_settings(write(tmp_path, explicit), environ={})


def test_cache_settings_for_the_request_path() -> None:
    settings = Settings()
    assert settings.cache.enabled is False and settings.semantic_cache_wanted is False
    assert settings.labels.spend_client_keys is False
    rule = {"request_model": "gpt-5", "draft_model": "gpt-5-mini", "verifier_model": "gpt-5"}
    plain = CascadeRule(**rule)
    assert (plain.semantic_cache, plain.semantic_threshold, plain.cache_sampled) == (None, None, None)
    renamed = CascadeRule(**rule, cache_threshold=0.9)
    assert renamed.semantic_threshold == 0.9 and renamed.cache_threshold == 0.9
    assert CascadeRule(**rule, cache_threshold=0.9, semantic_threshold=0.9).semantic_threshold == 0.9
    providers = {"openai": {"base_url": "https://api.openai.com/v1"}}
    wanted = Settings(providers=providers, cascade_rules=[{**rule, "semantic_cache": True, "cache_sampled": True}])
    assert wanted.semantic_cache_wanted and wanted.cascade_rules[0].cache_sampled is True
    assert Settings(cache={"enabled": True}).semantic_cache_wanted


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"semantic_threshold": 1.5}, r"cascade_rules\.0\.semantic_threshold"),
        ({"cache_threshold": -0.1}, r"cascade_rules\.0\.semantic_threshold"),
        ({"cache_threshold": 0.8, "semantic_threshold": 0.9}, r"cascade_rules\.0: cache_threshold: the deprecated"),
        ({"semantic_cache": "maybe"}, r"cascade_rules\.0\.semantic_cache"),
    ],
)
def test_invalid_cache_rule_settings(tmp_path: Path, rule: dict[str, object], expected: str) -> None:
    rules = [{"request_model": "gpt-5", "draft_model": "gpt-5-mini", "verifier_model": "gpt-5", **rule}]
    with pytest.raises(ConfigError, match=expected):
        load_settings(write(tmp_path, yaml.safe_dump({"cascade_rules": rules})), environ={})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "proxy.internal"])
def test_without_proxy_keys_the_proxy_listens_on_loopback_only(tmp_path: Path, host: str) -> None:
    path = write(tmp_path, f"server: {{host: '{host}'}}\n")
    with pytest.raises(ConfigError, match="server.host: .* is not loopback and no proxy keys"):
        load_settings(path, environ={})
    assert load_settings(path, environ={"CASCADEFLOW_AUTH__MODE": "open"}).server.host == host
    assert load_settings(path, environ={"CASCADEFLOW_SERVER__OPEN_WITHOUT_KEYS": "true"}).server.host == host  # old
    digest = "a" * 64
    keyed = write(tmp_path, f"server: {{host: '{host}'}}\nauth: {{keys: [{{key_sha256: '{digest}', user: u}}]}}\n")
    assert load_settings(keyed, environ={}).server.host == host
    for loopback in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert load_settings(write(tmp_path, f"server: {{host: '{loopback}'}}\n"), environ={}).server.host == loopback


def test_open_mode_takes_no_proxy_keys(tmp_path: Path) -> None:
    digest = "a" * 64
    path = write(tmp_path, f"auth: {{mode: open, keys: [{{key_sha256: '{digest}', user: u}}]}}\n")
    with pytest.raises(ConfigError, match="mode: open takes no proxy keys"):
        load_settings(path, environ={})
