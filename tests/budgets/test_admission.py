"""Budgets on a running proxy: refusals in each dialect (and how the SDKs take them), holds of requests in flight,
user and tier budgets, a restart that keeps today's spend, and one budget across two replicas sharing Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from router.app import create_app
from router.auth import hash_key
from router.protocol.tokens import estimate_input_tokens
from router.replay.runner import BackgroundServer
from router.settings import Settings
from tests.auth.helpers import REDIS_URL, ask_anthropic, ask_openai, drop_prefix, redis_or_skip, redis_prefix
from tests.budgets.helpers import PRICES, USD_PER_TOKEN
from tests.support import ProxyFactory, marker, proxy_settings, received_with

OPS = "key-ops-" + marker()
"""An admin key, which /metrics needs with proxy keys: every proxy here has it."""


def budget_settings(upstream_url: str, keys: list[dict[str, Any]], **sections: Any) -> Settings:
    auth = {"keys": [*keys, key_entry(OPS, "ops", admin=True)], **sections.pop("auth", {})}
    return proxy_settings(upstream_url, model_info=PRICES, auth=auth, **sections)


def key_entry(secret: str, user: str, **fields: Any) -> dict[str, Any]:
    return {"key_sha256": hash_key(secret), "user": user, **fields}


def refusals(proxy_url: str, **labels: str) -> float:
    text = httpx.get(f"{proxy_url}/metrics", headers={"authorization": f"Bearer {OPS}"}).text
    wanted = ",".join(f'{name}="{value}"' for name, value in sorted(labels.items()))
    line = next((line for line in text.splitlines()
                 if line.startswith(f"cascadeflow_budget_refusals_total{{{wanted}}}")), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def spend_until_refused(url: str, key: str, limit: int = 20) -> tuple[int, httpx.Response]:
    for count in range(limit):
        response = ask_anthropic(url, key, marker())
        if response.status_code != 200:
            return count, response
    raise AssertionError("never refused")


def test_an_exhausted_budget_is_a_429_in_each_dialect_before_the_upstream(
        proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    secret = "key-" + marker()
    proxy = proxy_factory(budget_settings(upstream.url, [key_entry(secret, "spender", daily_budget_usd=0.05)]))
    admitted, refused = spend_until_refused(proxy.url, secret)
    assert admitted == 2  # ~0.032 USD each: the second starts below the budget and ends above it
    tag = marker()
    anthropic_refusal = ask_anthropic(proxy.url, secret, tag)
    for response in (refused, anthropic_refusal):
        assert response.status_code == 429 and response.headers["x-should-retry"] == "false"
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert "daily budget of 0.05 USD of key:" in body["error"]["message"] and body["request_id"]
        assert response.headers["request-id"] == body["request_id"]
        assert 0 < int(response.headers["retry-after"]) <= 86400
        assert response.headers["x-cascadeflow-budget-reset"].endswith("T00:00:00Z")
    openai_refusal = ask_openai(proxy.url, secret, tag)
    assert openai_refusal.status_code == 429 and openai_refusal.headers["x-should-retry"] == "false"
    error = openai_refusal.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota" and error["param"] is None
    assert "spent" in error["message"] and openai_refusal.headers["x-request-id"]
    assert received_with(upstream, tag) == []
    count = httpx.post(f"{proxy.url}/v1/messages/count_tokens", headers={"x-api-key": secret},
                       json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]})
    assert count.status_code == 200  # a token count spends nothing: never refused
    assert refusals(proxy.url, period="daily", reason="exhausted", scope="key", tier="none") == 3


def test_the_sdks_raise_their_rate_limit_error_and_do_not_retry(proxy_factory: ProxyFactory,
                                                                  upstream: BackgroundServer) -> None:
    secret = "key-" + marker()
    proxy = proxy_factory(budget_settings(upstream.url, [key_entry(secret, "sdk-user", monthly_budget_usd=0.0)]))
    claude = anthropic.Anthropic(base_url=proxy.url, api_key=secret, max_retries=2)
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert "monthly budget of 0.00 USD" in str(caught.value)
    gpt = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=secret, max_retries=2)
    with pytest.raises(openai.RateLimitError) as refused:
        gpt.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "insufficient_quota"
    assert refusals(proxy.url, period="monthly", reason="exhausted", scope="key", tier="none") == 2  # once each


def test_requests_in_flight_hold_their_worst_case_and_the_overshoot_stays_below_one(
        proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    prompt = "[[delay:0.8]] [[text:ok]] " + "filler " * 20
    body = {"messages": [{"role": "user", "content": prompt}]}
    estimate = (estimate_input_tokens(body) + 64) * USD_PER_TOKEN  # input as cache writes, max_tokens out
    limit = 2.5 * estimate
    secret = "key-" + marker()
    proxy = proxy_factory(budget_settings(upstream.url, [key_entry(secret, "burst", daily_budget_usd=limit)]))
    tag = marker()
    results: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: results.append(ask_anthropic(proxy.url, secret, f"{prompt} {tag}")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(response.status_code for response in results) == [200] * 3 + [429] * 5  # 0, e, 2e < 2.5e
    assert len(received_with(upstream, tag)) == 3
    held = [response for response in results if response.status_code == 429]
    assert all("held by requests in flight" in response.json()["error"]["message"] for response in held)
    assert all(response.headers["retry-after"] == "2" and "x-should-retry" not in response.headers
               for response in held)
    spend_until_refused(proxy.url, secret)
    metrics = httpx.get(f"{proxy.url}/metrics", headers={"authorization": f"Bearer {OPS}"}).text
    spent = float(next(line for line in metrics.splitlines()
                       if line.startswith('cascadeflow_cost_usd_total{kind="actual"}')).rsplit(" ", 1)[1])
    assert limit <= spent < limit + estimate


def test_user_and_tier_budgets(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    alice, bob, carol = ("key-" + marker() for _ in range(3))
    tiers = {"pro": {"daily_budget_usd": 10.0, "total": {"daily_budget_usd": 0.15}}}
    settings = budget_settings(upstream.url, [key_entry(alice, "alice", tier="pro"), key_entry(bob, "bob", tier="pro"),
                                              key_entry(carol, "carol", tier="pro")],
                               auth={"tiers": tiers, "users": {"alice": {"daily_budget_usd": 0.03}}})
    proxy = proxy_factory(settings)
    assert ask_anthropic(proxy.url, alice, marker()).status_code == 200
    over = ask_anthropic(proxy.url, alice, marker())
    assert over.status_code == 429 and "of user:alice" in over.json()["error"]["message"]  # her own override
    admitted, refused = spend_until_refused(proxy.url, bob)
    assert admitted == 4 and "of tier:pro" in refused.json()["error"]["message"]  # the tier's users together
    assert ask_openai(proxy.url, carol, marker()).status_code == 429
    assert refusals(proxy.url, period="daily", reason="exhausted", scope="tier", tier="pro") == 2


def test_a_restart_keeps_todays_spend(upstream: BackgroundServer, tmp_path: Path) -> None:
    secret = "key-" + marker()
    settings = budget_settings(upstream.url, [key_entry(secret, "restarted", daily_budget_usd=0.05)],
                               spend={"url": f"sqlite:///{tmp_path}/spend.sqlite", "spool_path": None})
    with BackgroundServer(create_app(settings)) as first:
        admitted, _ = spend_until_refused(first.url, secret)
    with BackgroundServer(create_app(settings)) as second:
        refused = ask_openai(second.url, secret, marker())
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
        usage = httpx.get(f"{second.url}/v1/usage", headers={"authorization": f"Bearer {secret}"}).json()
    assert admitted == 2 and usage["total"]["requests"] == 2 and usage["total"]["actual_cost_usd"] > 0.05


async def test_one_budget_across_two_proxies_sharing_redis(upstream: BackgroundServer) -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    secret = "key-" + marker()
    settings = budget_settings(upstream.url, [key_entry(secret, "replicated", daily_budget_usd=0.05)],
                               auth={"limiter": "redis", "redis_url": REDIS_URL, "redis_prefix": prefix})
    try:
        with BackgroundServer(create_app(settings)) as first, BackgroundServer(create_app(settings)) as second:
            for _ in range(2):
                assert (await asyncio.to_thread(ask_anthropic, first.url, secret, marker())).status_code == 200
            deadline = time.monotonic() + 3.0  # a replica settles in Redis in the background after the answer
            while not await _spent_at_least(client, prefix, 0.05):
                assert time.monotonic() < deadline, "the first replica's spend never reached Redis"
                await asyncio.sleep(0.05)
            refused = await asyncio.to_thread(ask_openai, second.url, secret, marker())
            assert refused.status_code == 429 and refused.json()["error"]["type"] == "insufficient_quota"
            keys = [key async for key in client.scan_iter(match=f"{prefix}:budget:spent:*", count=100)]
            assert len(keys) == 2  # the key's day and month, shared
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


async def _spent_at_least(client: Any, prefix: str, usd: float) -> bool:
    keys = [key async for key in client.scan_iter(match=f"{prefix}:budget:spent:*:d:*", count=100)]
    values = [float(await client.get(key) or 0) for key in keys]
    return bool(values) and max(values) >= usd


def test_the_budget_counts_a_thrown_away_draft_on_a_stream(upstream: BackgroundServer, tmp_path: Path) -> None:
    rule = {"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5",
            "verifier_model": "claude-opus-4-8", "quality_threshold": 0.6}
    measure, bounded = "key-" + marker(), "key-" + marker()
    keys = [key_entry(measure, "measure"), key_entry(bounded, "bounded", daily_budget_usd=1.0)]
    settings = budget_settings(upstream.url, keys, cascade_rules=[rule],
                               spend={"url": f"sqlite:///{tmp_path}/spend.sqlite", "spool_path": None})
    prompt = "[[weak:claude-haiku-4-5]] " + marker()

    def escalated(key: str) -> int:
        body = {"model": "claude-opus-4-8", "max_tokens": 64, "stream": True,
                "messages": [{"role": "user", "content": prompt}]}
        with httpx.stream("POST", f"{proxy.url}/v1/messages", json=body, timeout=30,
                          headers={"x-api-key": key, "anthropic-version": "2023-06-01"}) as stream:
            if stream.status_code == 200:
                assert stream.headers["x-cascadeflow-route"] == "escalated" and b"message_stop" in stream.read()
            return stream.status_code

    with BackgroundServer(create_app(settings)) as proxy:
        assert escalated(measure) == 200
        (row,) = httpx.get(f"{proxy.url}/v1/usage", headers={"x-api-key": measure}).json()["data"]
        actual, wasted = row["actual_cost_usd"], row["wasted_draft_usd"]
        assert wasted > 0 and actual > wasted
        bounded_settings = budget_settings(upstream.url, [key_entry(bounded, "bounded",
                                                                    daily_budget_usd=actual - wasted / 2)],
                                           cascade_rules=[rule])
    with BackgroundServer(create_app(bounded_settings)) as proxy:
        assert escalated(bounded) == 200  # starts under the budget; the strong answer alone stays under it ...
        assert escalated(bounded) == 429  # ... but with its thrown-away draft it went over
