"""Rate limits: requests and tokens per minute and concurrency caps, in one process and shared through Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.auth import hash_key
from router.auth_keys.admission import rate_limit_headers
from router.auth_keys.limits import Decision, Limits, MemoryLimiter, Scope
from router.auth_keys.redis_limits import RedisLimiter
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource
from router.replay.server import create_upstream_app
from router.types import Dialect
from tests.auth.helpers import (
    REDIS_URL,
    ask_anthropic,
    ask_openai,
    drop_prefix,
    process_config,
    proxy_processes,
    redis_or_skip,
    redis_prefix,
)
from tests.support import ProxyFactory, marker, proxy_settings, received_with


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keyed_proxy(proxy_factory: ProxyFactory, upstream: BackgroundServer, **key: Any) -> tuple[BackgroundServer, str]:
    """A proxy whose one config key has the given limits (and tier, with `tiers` in `key`)."""
    secret = "key-" + marker()
    tiers = key.pop("tiers", {})
    entry = {"key_sha256": hash_key(secret), "user": "u-" + marker(), **key}
    return proxy_factory(proxy_settings(upstream.url, auth={"keys": [entry], "tiers": tiers})), secret


async def test_the_window_admits_the_limit_then_refuses_until_the_oldest_leaves() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    scopes = [Scope("key:a", Limits(rpm=6))]
    early = [await limiter.acquire(scopes, 1) for _ in range(3)]
    clock.now += 30.0
    late = [await limiter.acquire(scopes, 1) for _ in range(4)]
    assert [decision.allowed for decision in early + late] == [True] * 6 + [False]
    assert [d.requests.remaining for d in early + late] == [5, 4, 3, 2, 1, 0, 0]  # type: ignore[union-attr]
    refused = late[-1]
    assert refused.retry_after_s == pytest.approx(30.0) and "6 requests per minute of key:a" in refused.reason
    assert refused.requests is not None and refused.requests.reset_s == pytest.approx(60.0)  # whole again
    clock.now += 29.9
    assert not (await limiter.acquire(scopes, 1)).allowed  # refusals take no slot: the oldest still leaves at 60 s
    clock.now += 0.1
    again = [await limiter.acquire(scopes, 1) for _ in range(4)]
    assert [decision.allowed for decision in again] == [True] * 3 + [False]  # the three of t=0 left, not more
    assert again[-1].retry_after_s == pytest.approx(30.0)  # the first of t=30 leaves at 90 s
    clock.now += 30.0
    assert sum([(await limiter.acquire(scopes, 1)).allowed for _ in range(5)]) == 3


async def test_the_window_never_admits_more_than_the_limit_in_any_minute() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    scopes = [Scope("key:w", Limits(rpm=10))]
    admitted: list[float] = []
    for step in range(600):  # a request every 0.37 s for 222 s, about 162 a minute offered
        clock.now = 1000.0 + step * 0.37
        if (await limiter.acquire(scopes, 1)).allowed:
            admitted.append(clock.now)
    assert max(sum(1 for moment in admitted if start <= moment < start + 60.0) for start in admitted) == 10
    assert len(admitted) == 10 * 4  # 222 s: windows starting at 0, 60, 120 and 180 s, each filled at once


async def test_a_refusal_by_one_scope_charges_no_other() -> None:
    limiter = MemoryLimiter(Clock())
    user = Scope("user:bob", Limits(rpm=2))
    first, second = Scope("key:1", Limits(rpm=10)), Scope("key:2", Limits(rpm=10))
    assert (await limiter.acquire([first, user], 1)).allowed and (await limiter.acquire([second, user], 1)).allowed
    refused = await limiter.acquire([first, user], 1)
    assert not refused.allowed and "user:bob" in refused.reason
    alone = await limiter.acquire([first], 1)
    assert alone.requests is not None and alone.requests.remaining == 8  # the refused request was not counted


async def test_tokens_are_reconciled_with_the_real_usage() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    scopes = [Scope("key:t", Limits(tpm=1000))]
    admitted = await limiter.acquire(scopes, 100)
    assert admitted.tokens is not None and admitted.tokens.remaining == 900 and admitted.ticket is not None
    admitted.ticket.settle(700)
    admitted.ticket.settle(5)  # once only
    assert not (await limiter.acquire(scopes, 350)).allowed
    refunded = await limiter.acquire(scopes, 250)
    assert refunded.allowed and refunded.ticket is not None and refunded.tokens.remaining == 50  # type: ignore[union-attr]
    refunded.ticket.settle(0)  # a failed request spent nothing: its estimate comes back
    assert (await limiter.acquire(scopes, 250)).allowed
    too_big = await limiter.acquire(scopes, 1001)
    assert not too_big.allowed and "exceed the limit of 1000 tokens per minute" in too_big.reason


async def test_concurrency_cap_in_process() -> None:
    limiter = MemoryLimiter(Clock())
    scopes = [Scope("key:c", Limits(max_concurrent=2))]
    first, second = await limiter.acquire(scopes, 1), await limiter.acquire(scopes, 1)
    third = await limiter.acquire(scopes, 1)
    assert first.allowed and second.allowed and not third.allowed and "concurrent" in third.reason
    assert first.ticket is not None
    first.ticket.release()
    first.ticket.release()  # once only
    assert limiter.in_flight("key:c") == 1 and (await limiter.acquire(scopes, 1)).allowed


def test_header_formats() -> None:
    decision = Decision(False, requests=None, retry_after_s=2.2)
    assert rate_limit_headers(Dialect.OPENAI_CHAT, decision) == {"retry-after": "3"}
    from router.auth_keys.limits import Window

    windows = Decision(True, Window(10, 4, 0.25), Window(1000, 10, 75.5))
    openai = rate_limit_headers(Dialect.OPENAI_CHAT, windows)
    assert openai == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "4",
                      "x-ratelimit-reset-requests": "250ms", "x-ratelimit-limit-tokens": "1000",
                      "x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "1m15.5s"}
    anthropic = rate_limit_headers(Dialect.ANTHROPIC, windows)
    assert anthropic["anthropic-ratelimit-requests-limit"] == "10"
    assert anthropic["anthropic-ratelimit-tokens-remaining"] == "10"
    assert anthropic["anthropic-ratelimit-tokens-reset"].endswith("Z") and "retry-after" not in anthropic


def test_rpm_limit_is_a_429_in_each_dialect_and_never_reaches_the_upstream(
        proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    proxy, key = keyed_proxy(proxy_factory, upstream, rpm=2)
    tag = marker()
    first = ask_anthropic(proxy.url, key, tag)
    assert first.status_code == 200 and first.headers["anthropic-ratelimit-requests-limit"] == "2"
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
    second = ask_openai(proxy.url, key, tag)
    assert second.status_code == 200 and second.headers["x-ratelimit-remaining-requests"] == "0"
    refused = ask_anthropic(proxy.url, key, tag + "-refused")
    assert refused.status_code == 429
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error" and body["error"]["message"]
    assert 40 <= int(refused.headers["retry-after"]) <= 60  # until the first of the two leaves the window
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert refused.headers["anthropic-ratelimit-requests-reset"].endswith("Z") and refused.headers["request-id"]
    refused = ask_openai(proxy.url, key, tag + "-refused")
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s") and int(refused.headers["retry-after"]) >= 1
    assert len(received_with(upstream, tag)) == 2 and received_with(upstream, tag + "-refused") == []


def test_tier_limits_hold_per_user(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    proxy, key = keyed_proxy(proxy_factory, upstream, tier="free", tiers={"free": {"rpm": 1, "tpm": 100_000}})
    ok = ask_openai(proxy.url, key, marker())
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-tokens"] == "100000"
    refused = ask_openai(proxy.url, key, marker())
    assert refused.status_code == 429 and "user:" in refused.json()["error"]["message"]


def test_concurrency_cap_on_a_running_proxy(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    proxy, key = keyed_proxy(proxy_factory, upstream, max_concurrent=1)
    slow: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: slow.update(
        response=ask_anthropic(proxy.url, key, "[[delay:1.0]] " + marker())))
    thread.start()
    time.sleep(0.4)
    tag = marker()
    busy = ask_anthropic(proxy.url, key, tag)
    assert busy.status_code == 429 and "concurrent" in busy.json()["error"]["message"]
    assert busy.headers["retry-after"] == "1" and received_with(upstream, tag) == []
    thread.join(10)
    assert slow["response"].status_code == 200
    assert ask_anthropic(proxy.url, key, marker()).status_code == 200


def test_a_stream_holds_its_slot_until_its_last_event(proxy_factory: ProxyFactory) -> None:
    with BackgroundServer(create_upstream_app(ScriptedSource(), stream_delay_s=0.15)) as paced:
        secret = "key-" + marker()
        proxy = proxy_factory(proxy_settings(paced.url, auth={"keys": [
            {"key_sha256": hash_key(secret), "user": "streamer", "max_concurrent": 1}]}))
        body = {"model": "claude-haiku-4-5", "max_tokens": 64, "stream": True,
                "messages": [{"role": "user", "content": "[[text:one two three four five six]]"}]}
        headers = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
        with httpx.stream("POST", f"{proxy.url}/v1/messages", json=body, headers=headers, timeout=30) as stream:
            assert stream.status_code == 200
            chunks = stream.iter_bytes()
            next(chunks)
            assert ask_anthropic(proxy.url, secret, marker()).status_code == 429  # mid-stream: the slot is held
            assert b"message_stop" in b"".join(chunks)
        deadline = time.monotonic() + 2.0
        while (after := ask_anthropic(proxy.url, secret, marker())).status_code == 429:
            assert time.monotonic() < deadline, "the slot was not given back when the stream ended"
            time.sleep(0.05)
        assert after.status_code == 200
        with httpx.stream("POST", f"{proxy.url}/v1/messages", json=body, headers=headers, timeout=30) as stream:
            next(stream.iter_bytes())  # then the client hangs up mid-stream
        deadline = time.monotonic() + 3.0
        while (after := ask_anthropic(proxy.url, secret, marker())).status_code == 429:
            assert time.monotonic() < deadline, "the slot of a dropped stream was not given back"
            time.sleep(0.05)


def test_tokens_per_minute_on_a_running_proxy_follow_the_real_usage(
        proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    proxy, key = keyed_proxy(proxy_factory, upstream, tpm=1000)
    long_answer = "[[text:" + "word " * 300 + "]]"  # ~300 input tokens estimated, ~380 more in the answer
    first = ask_openai(proxy.url, key, long_answer)
    assert first.status_code == 200
    usage = first.json()["usage"]
    estimate = 1000 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert usage["total_tokens"] > estimate + 300  # the answer was long: the estimate alone under-counts
    second = ask_openai(proxy.url, key, long_answer)  # admitted on estimates alone (2 x ~330 < 1000) ...
    assert second.status_code == 429, "the first request's real usage was not charged"  # ... not on real usage
    assert int(second.headers["retry-after"]) >= 2 and second.headers["x-ratelimit-limit-tokens"] == "1000"

    failing, key2 = keyed_proxy(proxy_factory, upstream, tpm=1500)
    big = "x" * 3600  # ~900 tokens estimated; an upstream failure spends none, so the estimate is refunded
    assert ask_anthropic(failing.url, key2, big + " [[status:400]]").status_code == 400
    assert ask_anthropic(failing.url, key2, big).status_code == 200


async def test_two_replicas_sharing_redis_admit_exactly_the_limit() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    replicas = [RedisLimiter(REDIS_URL, prefix), RedisLimiter(REDIS_URL, prefix)]
    try:
        scopes = [Scope("key:shared", Limits(rpm=10)), Scope("user:shared", Limits(rpm=1000))]
        burst = await asyncio.gather(*(replicas[index % 2].acquire(scopes, 1) for index in range(30)))
        assert sum(decision.allowed for decision in burst) == 10
        assert {index % 2 for index, decision in enumerate(burst) if decision.allowed} == {0, 1}
        refused = [decision for decision in burst if not decision.allowed]
        assert all(50.0 < decision.retry_after_s <= 60.0 and "key:shared" in decision.reason for decision in refused)
        assert all(replica.healthy for replica in replicas)
        user = await replicas[0].acquire([Scope("user:shared", Limits(rpm=1000))], 1)
        assert user.requests is not None and user.requests.remaining == 1000 - 11  # refusals charged nothing
    finally:
        for replica in replicas:
            await replica.close()
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_two_proxies_sharing_redis_admit_exactly_the_limit(proxy_factory: ProxyFactory,
                                                                  upstream: BackgroundServer) -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    try:
        secret = "key-" + marker()
        auth = {"keys": [{"key_sha256": hash_key(secret), "user": "replicated", "rpm": 4}], "limiter": "redis",
                "redis_url": REDIS_URL, "redis_prefix": prefix}
        proxies = [proxy_factory(proxy_settings(upstream.url, auth=auth)) for _ in range(2)]
        tag = marker()
        statuses = await asyncio.gather(*(asyncio.to_thread(ask_openai, proxies[index % 2].url, secret, tag)
                                          for index in range(10)))
        assert sorted(response.status_code for response in statuses) == [200] * 4 + [429] * 6
        assert len(received_with(upstream, tag)) == 4
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_redis_concurrency_and_token_reconciliation_across_replicas() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    first, second = RedisLimiter(REDIS_URL, prefix), RedisLimiter(REDIS_URL, prefix)
    try:
        capped = [Scope("key:cc", Limits(max_concurrent=3))]
        held = await asyncio.gather(*(limiter.acquire(capped, 1) for limiter in (first, second) * 3))
        assert sum(decision.allowed for decision in held) == 3
        ticket = next(decision.ticket for decision in held if decision.ticket is not None)
        ticket.release()
        await first.drain()
        await second.drain()
        assert (await second.acquire(capped, 1)).allowed and not (await first.acquire(capped, 1)).allowed

        tokens = [Scope("key:tpm", Limits(tpm=1000))]
        admitted = await first.acquire(tokens, 100)
        assert admitted.allowed and admitted.ticket is not None and admitted.tokens.remaining == 900  # type: ignore[union-attr]
        admitted.ticket.settle(700)
        await first.drain()
        assert not (await second.acquire(tokens, 350)).allowed
        assert (await second.acquire(tokens, 250)).allowed
    finally:
        await first.close()
        await second.close()
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_redis_away_falls_back_to_counters_of_the_replica() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", redis_prefix())
    try:
        scopes = [Scope("key:x", Limits(rpm=1))]
        assert (await limiter.acquire(scopes, 1)).allowed and not (await limiter.acquire(scopes, 1)).allowed
        assert not limiter.healthy and limiter.last_error
    finally:
        await limiter.close()


@pytest.mark.slow  # three proxy processes
async def test_three_proxies_share_sixty_requests_a_minute(upstream: BackgroundServer, tmp_path: Path) -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    try:
        secret = "key-" + marker()
        config = process_config(upstream.url, state={"redis_url": REDIS_URL}, auth={
            "keys": [{"key_sha256": hash_key(secret), "user": "three", "rpm": 60}], "redis_prefix": prefix})
        with proxy_processes([config] * 3, tmp_path) as urls:
            tag = marker()
            started = time.monotonic()
            statuses = await asyncio.gather(*(asyncio.to_thread(ask_openai, urls[index % 3], secret, tag)
                                              for index in range(90)))
            elapsed = time.monotonic() - started
        served = [index % 3 for index, response in enumerate(statuses) if response.status_code == 200]
        assert elapsed < 60.0, "the window must still hold every admission"
        assert len(served) == 60, "exactly the limit, never 60 per replica"
        refused = [response for response in statuses if response.status_code == 429]
        # each waits until the oldest admission (made after `started`) leaves the window
        assert len(refused) == 30 and all(60 - elapsed <= int(r.headers["retry-after"]) <= 60 for r in refused)
        assert set(served) == {0, 1, 2}, "whichever replica serves them"
        assert len(received_with(upstream, tag)) == 60
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_the_shared_window_slides_on_redis_time() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    replicas = [RedisLimiter(REDIS_URL, prefix, period_ms=1500.0) for _ in range(2)]
    try:
        scopes = [Scope("key:slide", Limits(rpm=3))]
        first = [await replicas[0].acquire(scopes, 1)]
        await asyncio.sleep(0.6)
        later = [await replicas[index % 2].acquire(scopes, 1) for index in range(4)]
        assert [decision.allowed for decision in first + later] == [True, True, True, False, False]
        assert 0.6 < later[-1].retry_after_s < 1.0, "until the oldest admission leaves"
        await asyncio.sleep(later[-1].retry_after_s + 0.05)
        after = [await replicas[1].acquire(scopes, 1) for _ in range(2)]
        assert [decision.allowed for decision in after] == [True, False], "one left the window: one more fits"
        assert len(await client.zrange(replicas[0].rate_key("key:slide", "requests"), 0, -1)) == 3
    finally:
        for replica in replicas:
            await replica.close()
        await drop_prefix(client, prefix)
        await client.aclose()
