"""The soak test's parts: the upstream's count of requests in flight, the proxy configurations, the fit that makes
"memory flat" a number, and (slow) a run of a few seconds of each variant through a real proxy."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from starlette.types import Message, Receive, Scope, Send

from benchmarks.soak import VARIANTS, Counted, Soak, proxy_config, report, rss_slope, run_soak
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
    settings = Settings(**proxy_config(variant, "http://127.0.0.1:9", tmp_path, cache_max_mb=4))
    assert bool(settings.cascade_rules) == (variant == "cascade") == settings.cache.enabled
    if variant == "cascade":
        assert settings.cache.max_bytes == 4 * 1024 * 1024


def test_the_fit_is_over_the_last_half_in_mb_a_minute() -> None:
    growing = [(float(at), 200 * 1024 + at * 1024 // 30) for at in range(0, 601, 5)]  # 2 MB a minute
    assert rss_slope(growing) == pytest.approx(2.0, abs=0.02)
    filling_then_flat = [(float(at), 200 * 1024 + min(at, 250) * 100 + (at // 5 % 2) * 512)
                         for at in range(0, 601, 5)]  # grows until 250 s, then a 0.5 MB wobble
    assert abs(rss_slope(filling_then_flat)) < 0.1 and rss_slope(filling_then_flat[:20]) > 5
    assert rss_slope(growing[:2]) == 0.0


def test_the_report_shows_the_fit_and_the_cache_beside_rss() -> None:
    soak = Soak("cascade", 600, 1000, max_slope_mb_min=1.0)
    soak.rss_kb = [(float(at), 200 * 1024 + at * 1024 // 30) for at in range(0, 601, 5)]
    soak.cache = [(0.0, 0, 0), (600.0, 1200, 8 * 2**20)]
    text = report([soak])
    assert re.search(r"RSS fit over the last half \(MB/min\) +\+2\.00 \(flat: within 1\)", text), text
    assert "0 / 0.0 -> 1200 / 8.0" in text and "600s 220 (1200 entries, 8.0)" in text
    assert not soak.passed and text.endswith("FAIL")


@pytest.mark.slow  # proxy processes
@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_short_soak_answers_leaves_nothing_running_and_stops_in_time(variant: str, tmp_path: Path) -> None:
    # three seconds say nothing about a trend (the process is still warming up): the fit is only printed
    soak = await run_soak(variant, seconds=3.0, rate_per_min=1200, work=tmp_path, seed=3, sample_s=0.5,
                          max_slope_mb_min=float("inf"))
    text = report([soak])
    assert soak.sent == 60 and soak.categories["gave_up"] > 0 and soak.categories["ok"] > 30, text
    assert soak.server_errors == 0 and soak.upstream_in_flight_after == 0 and soak.bodies_held_after == 0, text
    assert len(soak.rss_kb) >= 4 and soak.graceful and soak.stop["stop s"] < 30, text
    assert bool(soak.cache) == (variant == "cascade") and "RSS fit over the last half" in text, text
    assert soak.passed and text.endswith("PASS"), text
