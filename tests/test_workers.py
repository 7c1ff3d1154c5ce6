"""`proxy start --workers 2`: two processes on one port, one outcome log, metrics summed across them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from router.replay.runner import BackgroundServer
from tests.support import marker

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 60

pytestmark = pytest.mark.slow  # starts two worker processes (several seconds)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def upstream_peers(pid: int, upstream_port: int) -> int:
    """How many open connections a process holds to the upstream (its pooled keep-alive ones)."""
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
               if c.raddr and c.raddr.port == upstream_port and c.status == psutil.CONN_ESTABLISHED)


def test_two_workers_share_the_port_the_outcome_log_and_the_metrics(upstream: BackgroundServer,
                                                                    tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "outcomes.sqlite"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}, workers: 2}}\n"
        f"providers:\n  anthropic: {{base_url: \"{upstream.url}\", api_key: sk-proxy}}\n"
        f"embedding: {{enabled: false}}\nlearned_router: {{enabled: false}}\n"
        f"outcome_log: {{enabled: true, url: \"sqlite:///{log}\"}}\n")
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    proxy = subprocess.Popen([sys.executable, "-m", "router.cli", "proxy", "start", "--config", str(config)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        tag = marker()

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=32, max_keepalive_connections=0)  # new connections: both workers
            async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
                replies = await asyncio.gather(*(client.post("/v1/messages", headers={"x-api-key": "sk-client"}, json={
                    "model": "claude-sonnet-5", "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"hello {tag} {index}"}]}) for index in range(REQUESTS)))
            return [reply.status_code for reply in replies]

        # A worker still starting accepts nothing, so bursts go on (up to a deadline) until both have served.
        upstream_port, sent = int(upstream.url.rsplit(":", 1)[1]), 0
        serving: list[int] = []
        deadline = time.monotonic() + 60
        while len(serving) < 2 and time.monotonic() < deadline:
            assert asyncio.run(burst()) == [200] * REQUESTS
            sent += REQUESTS
            workers = psutil.Process(proxy.pid).children()
            assert len(workers) >= 2
            serving = [w.pid for w in workers if upstream_peers(w.pid, upstream_port) > 0]
        assert len(serving) == 2, "both workers answered some of the requests"
        metrics = httpx.get(base + "/metrics", timeout=10).text
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                      if line.startswith("cascadeflow_requests_total{") and 'endpoint="messages"' in line)
        assert counted == sent, "each scrape sums every worker's counters"
    finally:
        proxy.send_signal(signal.SIGTERM)
        output, _ = proxy.communicate(timeout=60)
    with sqlite3.connect(log) as db:
        rows = db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
    assert rows == sent, f"one outcome record per request from both workers\n{output[-2000:]}"
