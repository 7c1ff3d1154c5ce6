"""A Redis that is not there, that accepts and never answers, or that stops answering mid-run: keyed requests
degrade as `state.on_failure` says (open: served on this replica's own counters; closed: a 503 in the client's
dialect naming what is down), say so in the logs, the metrics and /ready, and every one answers in time."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from router.auth_keys.records import hash_key, new_key
from router.auth_keys.store import open_key_store
from router.replay.runner import BackgroundServer
from tests.auth.helpers import (
    REDIS_URL,
    RedisRelay,
    ask_anthropic,
    ask_openai,
    drop_prefix,
    redis_or_skip,
    redis_prefix,
)
from tests.support import ProxyFactory, marker, proxy_settings, received_with

BOUND_S = 5.0
"""Each answer's bound while Redis is down (the proxy's own is about `state.timeout_s`, 0.5 s; the machine is
shared with benchmarks)."""
Ask = Callable[..., httpx.Response]


@pytest.fixture
def stalled_redis() -> Iterator[str]:
    """A Redis that accepts connections and never answers: a listening socket nobody reads from."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(512)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.fixture
def refused_redis() -> str:
    """A Redis that is not there: a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def keyed_proxy(proxy_factory: ProxyFactory, upstream: BackgroundServer, redis_url: str, policy: str, rpm: int = 3,
                **auth: Any) -> tuple[BackgroundServer, str, str]:
    """A proxy on a shared Redis with one user key (`rpm` requests a minute, a daily budget) and one admin key."""
    user, admin = "user-" + marker(), "admin-" + marker()
    keys = [{"key_sha256": hash_key(user), "user": "u" + marker(), "rpm": rpm, "daily_budget_usd": 100.0},
            {"key_sha256": hash_key(admin), "user": "ops", "admin": True}]
    settings = proxy_settings(upstream.url, auth={"keys": keys, "redis_prefix": redis_prefix()} | auth,
                              state={"redis_url": redis_url, "on_failure": policy})
    return proxy_factory(settings), user, admin


def timed(ask: Ask, url: str, key: str, text: str) -> httpx.Response:
    """One request, which must answer within BOUND_S."""
    started = time.monotonic()
    response = ask(url, key, text)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"answered in {elapsed:.2f} s"
    return response


def admin_get(proxy: BackgroundServer, admin: str, path: str) -> httpx.Response:
    return httpx.get(proxy.url + path, headers={"authorization": f"Bearer {admin}"}, timeout=BOUND_S)


def assert_refused_in_dialect(response: httpx.Response, ask: Ask, down: str) -> None:
    """A 503 in the client's dialect whose message names what is down, with a retry-after."""
    assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
    body = response.json()
    error = body["error"]
    if ask is ask_anthropic:
        assert body["type"] == "error" and body["request_id"] == response.headers["request-id"]
    else:
        assert error["code"] == error["type"] and "x-request-id" in response.headers
    assert error["type"] == "api_error" and down in error["message"], error


@pytest.mark.parametrize("policy", ["open", "closed"])
@pytest.mark.parametrize("dead", ["refused_redis", "stalled_redis"])
def test_a_dead_redis_degrades_as_configured_and_answers_in_time(
        proxy_factory: ProxyFactory, upstream: BackgroundServer, request: pytest.FixtureRequest,
        caplog: pytest.LogCaptureFixture, dead: str, policy: str) -> None:
    proxy, user, admin = keyed_proxy(proxy_factory, upstream, request.getfixturevalue(dead), policy)
    tag = marker()
    asks: list[Ask] = [ask_anthropic, ask_openai, ask_anthropic, ask_openai]
    with caplog.at_level(logging.WARNING, logger="router.storage.redis"):
        answers = [timed(ask, proxy.url, user, tag) for ask in asks]
    warnings = [record.getMessage() for record in caplog.records if record.name == "router.storage.redis"]
    assert len(warnings) == 1 and f"state.on_failure: {policy}" in warnings[0], warnings
    if policy == "open":  # served, and the replica's own counters still hold the key to 3 a minute
        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
        assert len(received_with(upstream, tag)) == 3
    else:
        for ask, answer in zip(asks, answers, strict=True):
            assert_refused_in_dialect(answer, ask, "budgets cannot be checked")
        assert received_with(upstream, tag) == []
    metrics = admin_get(proxy, admin, "/metrics").text
    assert 'cascadeflow_dependency_errors_total{dependency="budgets"}' in metrics
    if policy == "open":
        assert 'cascadeflow_dependency_errors_total{dependency="rate_limiter"}' in metrics
        assert 'cascadeflow_requests_total{dialect="anthropic",endpoint="messages",route="rejected",status="503"}' \
            not in metrics
    else:
        assert 'cascadeflow_requests_total{dialect="anthropic",endpoint="messages",route="rejected",status="503"} 2' \
            in metrics
    ready = admin_get(proxy, admin, "/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    check = ready.json()["checks"]["redis"]
    assert check["ok"] is False and check["on_failure"] == policy and check["required"] is False
    assert timed(ask_openai, proxy.url, admin, marker()).status_code == 200, "a key without limits needs no Redis"


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_a_burst_on_a_stalled_redis_leaves_no_request_hanging(
        proxy_factory: ProxyFactory, upstream: BackgroundServer, stalled_redis: str, policy: str) -> None:
    proxy, user, _ = keyed_proxy(proxy_factory, upstream, stalled_redis, policy, rpm=1000)
    asks: list[Ask] = [ask_anthropic, ask_openai] * 12
    answers = await asyncio.gather(*(asyncio.to_thread(timed, ask, proxy.url, user, marker()) for ask in asks))
    assert {answer.status_code for answer in answers} == ({200} if policy == "open" else {503})


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_redis_that_stops_answering_mid_run(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                  policy: str) -> None:
    client = await redis_or_skip()
    prefix = redis_prefix()
    try:
        with RedisRelay(REDIS_URL) as relay:
            store = open_key_store(REDIS_URL, redis_prefix=prefix)
            stored, record = new_key("stored-" + marker(), rpm=100, daily_budget_usd=50.0)
            await store.create(record)
            await store.close()
            proxy, user, admin = keyed_proxy(proxy_factory, upstream, relay.url, policy, mode="api_key",
                                             store=relay.url, redis_prefix=prefix)
            proxy_key = {"user": user, "stored": stored}

            async def ask(ask: Ask, key: str) -> httpx.Response:
                return await asyncio.to_thread(timed, ask, proxy.url, proxy_key[key], marker())

            assert (await ask(ask_anthropic, "user")).status_code == 200
            assert (await ask(ask_openai, "stored")).status_code == 200
            assert [key async for key in client.scan_iter(match=f"{prefix}:rl:*")], "counted in the shared Redis"
            assert admin_get(proxy, admin, "/ready").json()["status"] == "ready"

            relay.cut()
            answers = [(each, await ask(each, key)) for each, key in
                       ((ask_anthropic, "user"), (ask_openai, "stored"), (ask_openai, "user"))]
            await asyncio.sleep(1.2)  # the key store's view expires: the next stored key reads it (and fails)
            answers.append((ask_anthropic, await ask(ask_anthropic, "stored")))
            if policy == "open":
                assert [answer.status_code for _, answer in answers] == [200] * 4
            else:
                for each, answer in answers:
                    assert_refused_in_dialect(answer, each, "cannot be")
                assert "key store cannot be read" in answers[-1][1].json()["error"]["message"]
            metrics = admin_get(proxy, admin, "/metrics").text
            assert 'cascadeflow_dependency_errors_total{dependency="key_store"}' in metrics
            assert 'cascadeflow_dependency_errors_total{dependency="budgets"}' in metrics
            ready = admin_get(proxy, admin, "/ready").json()
            assert ready["status"] == "degraded" and not ready["checks"]["redis"]["ok"]
            assert not ready["checks"]["auth"]["ok"]

            relay.restore()
            deadline = time.monotonic() + 15
            while admin_get(proxy, admin, "/ready").json()["status"] != "ready":  # probes Redis and the store
                assert time.monotonic() < deadline, admin_get(proxy, admin, "/ready").json()
                await asyncio.sleep(0.3)
            assert (await ask(ask_anthropic, "user")).status_code == 200
            assert (await ask(ask_openai, "stored")).status_code == 200
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()
