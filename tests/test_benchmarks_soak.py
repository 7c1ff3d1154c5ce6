"""The soak test's parts: the upstream's count of requests in flight, the proxy configurations, and (slow) a run of a
few seconds of each variant through a real proxy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from starlette.types import Message, Receive, Scope, Send

from benchmarks.soak import VARIANTS, Counted, proxy_config, report, run_soak
from router.settings import Settings


async def test_the_upstream_counts_what_it_is_serving() -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()

    counted = Counted(app)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    calls = [asyncio.create_task(counted({"type": "http"}, receive, send)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert (counted.in_flight, counted.served) == (3, 0)
    release.set()
    await asyncio.gather(*calls)
    assert (counted.in_flight, counted.served) == (0, 3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_is_a_valid_config(variant: str, tmp_path: Path) -> None:
    settings = Settings(**proxy_config(variant, "http://127.0.0.1:9", tmp_path))
    assert bool(settings.cascade_rules) == (variant == "cascade") == settings.cache.enabled


@pytest.mark.slow  # proxy processes
@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_short_soak_answers_leaves_nothing_running_and_stops_in_time(variant: str, tmp_path: Path) -> None:
    soak = await run_soak(variant, seconds=3.0, rate_per_min=1200, work=tmp_path, seed=3, sample_s=0.5)
    text = report([soak])
    assert soak.sent == 60 and soak.categories["gave_up"] > 0 and soak.categories["ok"] > 30, text
    assert soak.server_errors == 0 and soak.upstream_in_flight_after == 0 and soak.bodies_held_after == 0, text
    assert len(soak.rss_kb) >= 4 and soak.graceful and soak.stop["stop s"] < 30, text
    assert soak.passed and text.endswith("PASS"), text
