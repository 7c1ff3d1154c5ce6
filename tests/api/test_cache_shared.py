"""Two proxies sharing one cache through a real Redis server; Redis stopped mid-run without a failed request."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import anthropic
import httpx
import pytest

from router.embedding.encoder import Encoder
from router.replay.runner import BackgroundServer
from tests.support import ProxyFactory, marker, proxy_settings, received_with


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_command(port: int, *args: str) -> None:
    subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, timeout=10, check=False)


def start_redis(port: int) -> None:
    subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--daemonize", "yes"], check=True, capture_output=True, timeout=10)
    wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                      text=True).stdout.strip() == "PONG")


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CASCADEFLOW_REQUIRE_E2E") == "1":
            pytest.fail("redis-server is required for the shared-cache tests")
        pytest.skip("redis-server not installed")
    port = free_port()
    start_redis(port)
    yield port
    redis_command(port, "shutdown", "nosave")


def ask(proxy: BackgroundServer, text: str) -> httpx.Response:
    client = anthropic.Anthropic(base_url=proxy.url, api_key="shared-tenant", max_retries=0)
    raw = client.messages.with_raw_response.create(model="claude-sonnet-5", max_tokens=32,
                                                   extra_body={"temperature": 0},
                                                   messages=[{"role": "user", "content": text}])
    return raw.http_response


def test_replicas_share_entries_and_survive_redis_going_away(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                             encoder: Encoder, redis_port: int) -> None:
    cache = {"enabled": True, "mode": "redis", "directory": None, "redis_url": f"redis://127.0.0.1:{redis_port}/0",
             "redis_prefix": f"test:{uuid.uuid4().hex[:8]}"}
    settings = proxy_settings(upstream.url, embedding={"enabled": True}, cache=cache)
    first, second = proxy_factory(settings, encoder), proxy_factory(settings, encoder)
    tag = marker()

    assert ask(first, f"What is the capital of Canada? {tag}").headers["x-cascadeflow-cache"] == "miss"
    wait_until(lambda: ask(second, f"What is the capital of Canada? {tag}").headers["x-cascadeflow-cache"] == "hit")
    assert len(received_with(upstream, f"capital of Canada? {tag}")) == 1, "the second replica used the shared entry"

    redis_command(redis_port, "shutdown", "nosave")
    for proxy in (first, second):
        response = ask(proxy, f"What is the capital of Peru? {tag}")
        assert response.status_code == 200, "a dead Redis never fails a request"
    wait_until(lambda: not httpx.get(first.url + "/ready").json()["checks"]["cache"]["ok"])
    ready = httpx.get(first.url + "/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ask(first, f"What is the capital of Peru? {tag}").headers["x-cascadeflow-cache"] == "hit", "local copy"

    start_redis(redis_port)
    wait_until(lambda: httpx.get(first.url + "/ready").json()["checks"]["cache"]["ok"]
               and httpx.get(second.url + "/ready").json()["checks"]["cache"]["ok"], timeout_s=20)
    ask(first, f"What is the capital of Chile? {tag}")
    wait_until(lambda: ask(second, f"What is the capital of Chile? {tag}").headers["x-cascadeflow-cache"] == "hit")
