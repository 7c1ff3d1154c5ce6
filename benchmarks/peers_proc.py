"""Process helpers of `peers.py`: start pinned, wait until ready, read CPU time and memory from /proc, stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
HEADERS = ("x-cascadeflow-route", "x-cascadeflow-predicted-good", "x-cascadeflow-cache")


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found + [grandchild for child in found for grandchild in _children(child)]


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    return [pid] + _children(pid)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def memory_kb(pids: list[int], field: str) -> int:
    """A /proc status field (VmRSS, VmHWM: the peak) summed over these processes."""
    total = 0
    for pid in pids:
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith(field + ":"):
                total += int(line.split()[1])
    return total


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start(command: list[str], cpu: str | None, log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a command in its own session, pinned to one CPU when `cpu` is given, output to `log` (truncated)."""
    environment = dict(os.environ)
    environment.update(env or {})
    pinned = ["taskset", "-c", cpu, *command] if cpu is not None else command
    with log.open("wb") as out:
        return subprocess.Popen(pinned, cwd=cwd, env=environment, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in reversed(pids):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a started process and its descendants (TERM, then KILL after 15 s)."""
    pids = tree(process.pid)
    _signal_all(pids, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        _signal_all(tree(process.pid), signal.SIGKILL)
        process.wait(5)
    _signal_all([pid for pid in pids[1:] if os.path.exists(f"/proc/{pid}")], signal.SIGKILL)


def post(port: int, api: str, key: str, text: str = "hi", stream: bool = False,
         timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
    """One request: status, body and the x-cascadeflow-* headers that tell what the proxy did."""
    body = json.dumps({"model": "fake-model", "max_tokens": 16, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATHS[api]}", data=body, method="POST",
        headers={"content-type": "application/json", "authorization": "Bearer " + key, "x-api-key": key,
                 "anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        headers = {name: response.headers.get(name, "") for name in HEADERS}
        return response.status, response.read(), headers


def wait_ready(port: int, api: str, key: str, timeout: float, process: subprocess.Popen[bytes] | None,
               started: float) -> float:
    """Seconds from `started` until the system answers a request with the upstream's text."""
    last = ""
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode} before it was ready")
        try:
            status, body, _ = post(port, api, key)
            if status == 200 and (b"Hello from the fake upstream." in body or b"tok9" in body):
                return time.monotonic() - started
            last = f"{status}: {body[:200]!r}"
        except Exception as exc:  # noqa: BLE001 - not ready yet, whatever the reason
            last = repr(exc)[:200]
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout:.0f} s: {last}")


def log_hint(log: Path) -> str:
    """The last line of a log that names an error or exception (tracebacks inside JSON log lines included)."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 20000))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    pieces = re.split(r"\n|\\n", text)
    return next((piece.strip()[:200] for piece in reversed(pieces) if re.search(r"(Error|Exception)\b:", piece)), "")
