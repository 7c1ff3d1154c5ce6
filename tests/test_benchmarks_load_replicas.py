"""The load test of several replicas: its replica config, its fit and percentiles, its hand-written SVG, and (slow) a
run of about ten seconds through two real proxies sharing the real Redis and PostgreSQL."""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from benchmarks.load_replicas import POSTGRES, TIER, Load, Replica, proxy_config, run_load
from benchmarks.load_replicas_report import MB, percentile, plot_memory, report, slope_mb_per_min, svg
from router.auth import Authenticator
from router.auth_keys.admission import KeyPrincipal
from router.settings import Settings
from tests.auth.helpers import redis_or_skip


def test_each_replica_shares_redis_and_the_database_with_limits_that_never_refuse(tmp_path: Path) -> None:
    database = f"{POSTGRES}/cf_load_x"
    settings = Settings(**proxy_config("http://127.0.0.1:9", tmp_path, database, "load:x", ["k0", "k1"], "adm"))
    assert settings.spend.url == settings.outcome_log.url == settings.auth.store == database
    assert settings.auth.limiter_redis_url == "redis://127.0.0.1:6379/0" and settings.auth.redis_prefix == "load:x"
    user = Authenticator(settings.auth).authenticate({"x-api-key": "k1"})
    assert isinstance(user, KeyPrincipal) and user.user == "load-user-1" and not user.admin
    assert [scope.limits.rpm for scope in user.scopes] == [TIER["rpm"]] and user.budgets
    assert isinstance(admin := Authenticator(settings.auth).authenticate({"x-api-key": "adm"}), KeyPrincipal)
    assert admin.admin


def test_the_slope_and_the_percentiles() -> None:
    rising = [(float(at), int((100 + 0.5 * at / 60) * MB)) for at in range(0, 600, 5)]
    assert slope_mb_per_min(rising, 300.0) == pytest.approx(0.5)
    assert slope_mb_per_min(rising, 10_000.0) != slope_mb_per_min(rising, 10_000.0)  # nan: no samples
    flat_then_step = [(0.0, 100 * MB), (60.0, 140 * MB), (120.0, 140 * MB), (180.0, 140 * MB)]
    assert slope_mb_per_min(flat_then_step, 60.0) == 0.0 and slope_mb_per_min(flat_then_step, 0.0) > 10
    values = [float(value) for value in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert math.isnan(percentile([], 0.5))


def fake_load(tmp_path: Path) -> Load:
    load = Load(120.0, 60.0, "this script (round robin)")
    for index in range(2):
        replica = Replica(f"replica{index}", 1, None, tmp_path / "log")  # type: ignore[arg-type]
        replica.rss = [(float(at), (120 + index * 10) * MB + at * 1000) for at in range(0, 121, 10)]
        load.replicas.append(replica)
    load.elapsed_s = 120.0
    return load


def test_the_hand_written_svg_draws_one_line_per_replica(tmp_path: Path) -> None:
    drawn = ElementTree.fromstring(svg(fake_load(tmp_path), "RSS"))
    lines = drawn.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2 and all(len(line.attrib["points"].split()) == 13 for line in lines)
    text = report(fake_load(tmp_path))
    assert "FAIL" in text and "replica1: RSS first / last / max (MB)   130.0 / 130.1 / 130.1" in text, text


@pytest.mark.slow  # two proxy processes, HAProxy when installed, PostgreSQL and Redis
async def test_a_short_load_through_two_replicas(tmp_path: Path) -> None:
    await (await redis_or_skip()).aclose()
    try:
        import asyncpg

        await (await asyncpg.connect(f"{POSTGRES}/postgres", timeout=5)).close()
    except Exception as exc:  # no server here
        if os.environ.get("CASCADEFLOW_REQUIRE_E2E") == "1":
            pytest.fail(f"PostgreSQL not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    load = await run_load(10.0, 360.0, tmp_path, sample_s=1.0)
    text = report(load)
    assert load.sent == 60 and load.categories["ok"] == 60 and not load.errors, text
    assert load.ledger == {"rows": 60, "duplicated": 0, "ok without a row": 0, "rows of no whole answer": 0}, text
    assert [replica.served for replica in load.replicas] == [30.0, 30.0], "round robin over both replicas"
    assert all(len(replica.rss) >= 8 and min(rss for _, rss in replica.rss) > 20 * MB for replica in load.replicas)
    assert all(replica.graceful for replica in load.replicas) and load.passed and text.endswith("PASS"), text
    assert "latency p50 / p99 / max (ms)" in text and "RSS slope, 2nd half (MB/min)" in text
    plot = plot_memory(load, tmp_path / "memory.png")
    assert plot.exists() and plot.stat().st_size > 5000
