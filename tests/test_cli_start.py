"""`cascadeflow proxy start` on a port that is taken fails at once, with one line naming the address."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.cli import bind_listener

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_start_on_a_taken_port_fails_at_once(taken_port: int, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server: {host: 127.0.0.1}\noutcome_log: {enabled: false}\n")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "proxy", "start", "--config", str(config), "--port", str(taken_port)],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    elapsed = time.perf_counter() - started
    assert result.returncode != 0
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert f"127.0.0.1:{taken_port}" in result.stderr and "already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout, "no banner before the socket is bound"


def test_bind_listener_listens_and_refuses_a_taken_port(taken_port: int) -> None:
    with pytest.raises(OSError):
        bind_listener("127.0.0.1", taken_port)
    sock = bind_listener("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname(), timeout=5):
            pass  # accepted into the backlog: the socket listens before the app has started
    finally:
        sock.close()


def test_an_invalid_config_stops_start_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  prot: 8000\n")
    result = subprocess.run([sys.executable, "-m", "router.cli", "proxy", "start", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert f"{config}:2:3: server.prot: " in result.stderr and "did you mean `port`?" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
