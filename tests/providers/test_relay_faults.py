"""A relayed answer whose upstream breaks it (cut inside an event, an event that is not JSON, a body that is not
JSON) reaches the client as a clean error in its dialect, never as half an event or as the upstream's garbage."""

from __future__ import annotations

import aiohttp
import pytest

from benchmarks.fault_checks import classify
from benchmarks.fault_upstream import FaultPlan, FaultUpstream
from benchmarks.faults import KINDS, PATHS
from tests.support import ProxyFactory, proxy_settings


def only(fault: str) -> FaultPlan:
    return FaultPlan(weights={fault: 1.0}, storm_length_s=0.0, latency_s=0.0, chunk_gap_s=0.0)


@pytest.mark.parametrize("fault", ["malformed", "drop_mid"])
async def test_a_broken_answer_is_a_clean_error_on_every_route(proxy_factory: ProxyFactory, fault: str) -> None:
    upstream = FaultUpstream(only(fault))
    url = await upstream.start()
    rules = [{"request_model": strong, "draft_model": draft, "verifier_model": strong}
             for strong, draft in (("claude-opus-4-8", "claude-haiku-4-5"), ("gpt-4o", "gpt-4o-mini"))]
    proxy = proxy_factory(proxy_settings(url, cascade_rules=rules))
    seen: dict[str, tuple[int, str]] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for number, kind in enumerate(KINDS):
                async with session.post(proxy.url + PATHS[kind.dialect], json=kind.body(number),
                                        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}) as response:
                    body = await response.read()
                    category = classify(kind.dialect, kind.stream, response.status,
                                        response.headers.get("content-type", ""), body)
                    seen[kind.label] = (response.status, category)
    finally:
        await upstream.stop()
    assert {label: found for label, found in seen.items() if found[1] not in ("error_json", "error_event")} == {}
    assert {status for status, _ in seen.values()} <= {200, 502}, seen
