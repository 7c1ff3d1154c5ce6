"""Serving installed local models: one llama.cpp server process per model on 127.0.0.1, started and stopped."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import router
from router.local.catalog import (
    DEFAULT_CTX_SIZE,
    DEFAULT_PORT_BASE,
    LOOPBACK,
    SERVER_PACKAGE,
    LocalModel,
    select_models,
)
from router.local.install import default_models_dir, installed_version, model_path
from router.local.weights import marked_verified
from router.local.worker import READY_PREFIX

STOP_GRACE_S = 10.0
LOG_TAIL_BYTES = 2000


class ServeError(Exception):
    """A model could not be served: not installed, port taken, or its server failed to start."""


@dataclass(frozen=True)
class RunningServer:
    """One model's server: `base_url` for OpenAI clients and the proxy (`.../v1`), `root_url` for the rest
    (Anthropic clients, `/health`)."""

    name: str
    root_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    startup_s: float
    context_window: int
    """Tokens of context it serves: the `ctx_size` asked for, capped at the model's own."""

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (`http://127.0.0.1:PORT/v1`)."""
        return self.root_url + "/v1"


def default_threads() -> int:
    """Threads per server: the CPUs this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def worker_command(path: Path, name: str, *, port: int, ctx_size: int, threads: int, parallel: int = 1,
                   cache_ram_mib: int = 2048, python: str | None = None) -> list[str]:
    """The command line of one server process."""
    return [python or sys.executable, "-m", "router.local.worker", "--model", str(path), "--alias", name,
            "--port", str(port), "--ctx-size", str(ctx_size), "--threads", str(threads),
            "--parallel", str(parallel), "--cache-ram-mib", str(cache_ram_mib)]


def ports_for(count: int, port_base: int) -> list[int]:
    """Consecutive ports from `port_base`; all 0 (any free port) when the base is 0."""
    return [port_base + index if port_base else 0 for index in range(count)]


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a TCP port can be bound on the host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(path: Path) -> str:
    """The end of a server's log, for an error message."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-LOG_TAIL_BYTES:].decode("utf-8", "replace")


def _child_environment() -> dict[str, str]:
    """This environment, with the `router` package importable from the child whatever its working directory."""
    environment = dict(os.environ)
    source_root = str(Path(router.__file__).resolve().parent.parent)
    paths = [source_root] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


def _read_ready_line(process: subprocess.Popen[bytes], deadline: float) -> str | None:
    """The worker's listening address, once it prints it; None if it exits or the deadline passes first."""
    assert process.stdout is not None
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], min(0.5, max(0.0, deadline - time.monotonic())))
        if readable:
            line = process.stdout.readline().decode("utf-8", "replace").strip()
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX):]
            if not line and process.poll() is not None:
                return None
        elif process.poll() is not None:
            return None
    return None


def wait_healthy(root_url: str, deadline: float) -> bool:
    """Poll `/health` until it answers 200 (503 while the model loads) or the deadline passes."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(root_url + "/health", timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def stop_server(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after the grace period."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def _check_servable(models: Sequence[LocalModel], models_dir: Path, ports: Sequence[int]) -> None:
    if installed_version(SERVER_PACKAGE.name) is None:
        raise ServeError(f"{SERVER_PACKAGE.name} is not installed: run `cascadeflow local-models install` "
                         f"(or pip install '{SERVER_PACKAGE.requirement}')")
    for model in models:
        if not marked_verified(model_path(model, models_dir), model.sha256, model.size):
            raise ServeError(f"{model.name} is not installed and verified in {models_dir}: run "
                             f"`cascadeflow local-models install --models {model.name}`")
    for model, port in zip(models, ports, strict=True):
        if port and not port_free(port):
            raise ServeError(f"port {port} ({model.name}) is in use on {LOOPBACK}: stop what holds it or "
                             "choose another --port-base")


@contextlib.contextmanager
def serve_models(names: Sequence[str] | None = None, *, models_dir: Path | None = None,
                 port_base: int = DEFAULT_PORT_BASE, ctx_size: int = DEFAULT_CTX_SIZE, threads: int | None = None,
                 parallel: int = 1, cache_ram_mib: int = 2048, log_dir: Path | None = None,
                 startup_timeout_s: float = 300.0,
                 environ: Mapping[str, str] | None = None) -> Iterator[dict[str, RunningServer]]:
    """Start one server per model (ports from `port_base`, or any free ones for 0), wait until each answers,
    yield them by model name, and stop them all on exit (also when starting fails)."""
    models = select_models(names)
    directory = models_dir or default_models_dir(os.environ if environ is None else environ)
    ports = ports_for(len(models), port_base)
    _check_servable(models, directory, ports)
    logs = log_dir or directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started: list[tuple[LocalModel, subprocess.Popen[bytes], Path, float]] = []
    servers: dict[str, RunningServer] = {}
    try:
        for model, port in zip(models, ports, strict=True):
            log_path = logs / f"{model.name}.log"
            command = worker_command(model_path(model, directory), model.name, port=port, ctx_size=ctx_size,
                                     threads=threads or default_threads(), parallel=parallel,
                                     cache_ram_mib=cache_ram_mib)
            with log_path.open("wb") as log:
                process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                           env=_child_environment(), start_new_session=True)
            started.append((model, process, log_path, time.monotonic()))
        for model, process, log_path, began in started:
            deadline = began + startup_timeout_s
            address = _read_ready_line(process, deadline)
            if address is None or not wait_healthy(address, deadline):
                reason = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
                raise ServeError(f"{model.name}: server {reason} while starting; end of {log_path}:\n"
                                 f"{log_tail(log_path)}")
            servers[model.name] = RunningServer(model.name, address, process, log_path, time.monotonic() - began,
                                                min(ctx_size, model.context_tokens))
        yield servers
    finally:
        for _, process, _, _ in started:
            if process.poll() is None:
                process.terminate()
        for _, process, _, _ in started:
            stop_server(process)
