"""Starting and stopping model servers, with a fake xllamacpp: ports, readiness, failures, clean shutdown."""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.local.catalog import LOOPBACK, select_models
from router.local.install import model_path
from router.local.serve import (
    ServeError,
    port_free,
    ports_for,
    serve_models,
    worker_command,
)
from router.local.weights import mark_verified
from router.local.worker import READY_PREFIX
from tests.local.fake_xllamacpp import install_fake

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["smollm2-135m", "qwen2.5-coder-0.5b"]


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake xllamacpp importable here and in the worker processes; two models 'installed' (sparse files)."""
    fake = install_fake(tmp_path / "fake")
    monkeypatch.syspath_prepend(str(fake))
    monkeypatch.setenv("PYTHONPATH", str(fake))
    importlib.invalidate_caches()
    models = tmp_path / "models"
    models.mkdir()
    for model in select_models(NAMES):
        path = model_path(model, models)
        with path.open("wb") as handle:
            handle.truncate(model.size)
        mark_verified(path, model.sha256)  # the fake server never reads the weights
    return models


def health(root_url: str) -> dict[str, object]:
    with urllib.request.urlopen(root_url + "/health", timeout=5) as response:
        answer: dict[str, object] = json.load(response)
    return answer


def refused(root_url: str) -> bool:
    host, port = root_url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def test_ports_are_consecutive_from_the_base_or_any_free_one() -> None:
    assert ports_for(3, 8601) == [8601, 8602, 8603]
    assert ports_for(2, 0) == [0, 0]


def test_the_worker_command_runs_this_interpreter_on_loopback_settings() -> None:
    command = worker_command(Path("/m/x.gguf"), "x", port=8601, ctx_size=32768, threads=2)
    assert command[:3] == [sys.executable, "-m", "router.local.worker"]
    assert command[command.index("--ctx-size") + 1] == "32768" and command[command.index("--alias") + 1] == "x"


def test_models_are_served_on_loopback_and_stopped_on_exit(fake_server: Path, tmp_path: Path) -> None:
    with serve_models(NAMES, models_dir=fake_server, port_base=0, ctx_size=4096, threads=1, parallel=2,
                      log_dir=tmp_path / "logs") as servers:
        assert list(servers) == NAMES
        urls = [server.root_url for server in servers.values()]
        assert len(set(urls)) == 2 and all(url.startswith(f"http://{LOOPBACK}:") for url in urls)
        first = servers["smollm2-135m"]
        assert first.base_url == first.root_url + "/v1" and first.startup_s > 0
        answer = health(first.root_url)
        assert answer["alias"] == ["smollm2-135m"] and answer["hosts"] == [LOOPBACK]
        assert (answer["n_ctx"], answer["threads"], answer["parallel"], answer["kv_unified"]) == (4096, 1, 2, True)
        assert answer["temperature"] == 0.0, "greedy when a request sets no temperature, as the drafts trained on"
        assert answer["model"] == str(fake_server / "SmolLM2-135M-Instruct.Q4_1.gguf")
        processes = [server.process for server in servers.values()]
    assert all(process.returncode is not None for process in processes)
    assert all(refused(url) for url in urls)


def test_a_server_that_fails_to_start_is_reported_with_its_log(fake_server: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_XLLAMACPP_FAIL", "1")
    with pytest.raises(ServeError, match="smollm2-135m: server exited with 1 while starting") as caught:
        with serve_models(NAMES, models_dir=fake_server, port_base=0, log_dir=tmp_path / "logs"):
            pytest.fail("must not start")
    assert "failed to load model" in str(caught.value)


def test_a_model_not_installed_is_refused_before_starting(fake_server: Path) -> None:
    with pytest.raises(ServeError, match="qwen2.5-coder-1.5b is not installed and verified"):
        with serve_models(["qwen2.5-coder-1.5b"], models_dir=fake_server):
            pytest.fail("must not start")


def test_a_taken_port_is_refused_before_starting(fake_server: Path) -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not port_free(port)
        with pytest.raises(ServeError, match=f"port {port} \\(smollm2-135m\\) is in use"):
            with serve_models(["smollm2-135m"], models_dir=fake_server, port_base=port):
                pytest.fail("must not start")


def test_a_worker_exits_when_its_parent_goes_away(fake_server: Path) -> None:
    (model,) = select_models(["smollm2-135m"])
    command = worker_command(model_path(model, fake_server), model.name, port=0, ctx_size=512, threads=1)
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline().decode().startswith(READY_PREFIX)
    process.stdin.close()  # what the parent's death does to the pipe
    assert process.wait(10) == 0
    process.stdout.close()


@pytest.fixture
def cli_server(fake_server: Path) -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "router.cli", "local-models", "serve", "--models", "smollm2-135m",
               "--port-base", "0", "--dir", str(fake_server)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(os.environ))
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_the_serve_command_prints_urls_and_a_config_then_stops_on_sigterm(cli_server: subprocess.Popen[str]) -> None:
    assert cli_server.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lines and lines[-1].startswith("serving on")):
        lines.append(cli_server.stdout.readline().rstrip("\n"))
    output = "\n".join(lines)
    assert lines[0].startswith("smollm2-135m: http://127.0.0.1:") and "/v1  (OpenAI" in lines[0]
    assert "kind: openai" in output and "local-smollm2-135m" in output and "cascade_rules" not in output
    root_url = lines[0].split()[1].removesuffix("/v1")
    assert health(root_url)["status"] == "ok"
    cli_server.send_signal(signal.SIGTERM)
    assert cli_server.wait(20) == 0
    assert "stopped" in cli_server.stdout.read()
    assert refused(root_url)


def test_serve_without_any_installed_model_says_how_to_install(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from router.cli import main

    assert main(["local-models", "serve", "--dir", str(tmp_path)]) == 1
    assert "no local model is installed" in capsys.readouterr().err
