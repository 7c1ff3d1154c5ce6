"""429s of the proxy's own rate limits are counted by the limit that refused and the tier, never by key or user."""

from __future__ import annotations

import httpx

from router.auth import hash_key
from router.auth_keys.limits import Limits, MemoryLimiter, Scope
from router.metrics import METRICS
from router.replay.runner import BackgroundServer
from tests.auth.helpers import ask_anthropic, ask_openai
from tests.support import ProxyFactory, marker, proxy_settings

NAME = "cascadeflow_rate_limit_refusals_total"


async def test_each_refusal_names_the_kind_of_limit() -> None:
    limiter = MemoryLimiter()
    rpm, tpm, concurrent = (Scope("key:a", Limits(rpm=1)), Scope("key:b", Limits(tpm=100)),
                            Scope("key:c", Limits(max_concurrent=1)))
    assert (await limiter.acquire([rpm], 1)).allowed
    assert (await limiter.acquire([rpm], 1)).refused_by == "requests"
    assert (await limiter.acquire([tpm], 500)).refused_by == "too_large"
    assert (await limiter.acquire([tpm], 100)).allowed
    assert (await limiter.acquire([tpm], 10)).refused_by == "tokens"
    assert (await limiter.acquire([concurrent], 1)).allowed
    assert (await limiter.acquire([concurrent], 1)).refused_by == "concurrent"
    assert METRICS[NAME].labels == ("reason", "tier")


def test_a_running_proxy_counts_its_429s(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    secret, user, ops = "key-" + marker(), "user-" + marker(), "key-ops-" + marker()
    entry = {"key_sha256": hash_key(secret), "user": user, "tier": "free"}
    admin = {"key_sha256": hash_key(ops), "user": "ops", "admin": True}  # /metrics needs an admin key
    proxy = proxy_factory(proxy_settings(upstream.url, auth={"keys": [entry, admin], "tiers": {"free": {"rpm": 1}}}))
    assert ask_anthropic(proxy.url, secret, marker()).status_code == 200
    assert ask_openai(proxy.url, secret, marker()).status_code == 429
    assert ask_anthropic(proxy.url, secret, marker()).status_code == 429
    scrape = httpx.get(f"{proxy.url}/metrics", headers={"authorization": f"Bearer {ops}"}, timeout=10)
    assert scrape.status_code == 200
    lines = [line for line in scrape.text.splitlines() if line.startswith(NAME + "{")]
    assert lines == [f'{NAME}{{reason="requests",tier="free"}} 2.0']
    assert secret not in scrape.text and user not in scrape.text and hash_key(secret)[:10] not in scrape.text
