"""The dashboard's summary cache: callers within the TTL share one aggregation (those that come while it runs wait
for it), a new one runs after the TTL, a failure is not kept, and a caller that leaves cancels nothing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.dashboard.cache import SingleFlightCache
from router.dashboard.reads import cached_summary
from router.dashboard.state import DashboardState
from router.services import Services
from router.storage.records import OutcomeRecord
from tests.dashboard.test_reads import records
from tests.dashboard.test_sessions import Clock
from tests.support import proxy_settings


class Counted:
    """A computation that waits for its release and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> dict[str, int]:
        self.runs += 1
        await self.release.wait()
        return {"run": self.runs}


async def settle() -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_callers_share_one_computation_until_the_ttl_ends() -> None:
    clock, compute = Clock(), Counted()
    cache: SingleFlightCache[dict[str, int]] = SingleFlightCache(5.0, clock=clock)
    waiting = [asyncio.create_task(cache.get(("summary", 7), compute)) for _ in range(3)]
    await settle()
    assert compute.runs == 1 and not any(task.done() for task in waiting)
    compute.release.set()
    assert [await task for task in waiting] == [{"run": 1}] * 3
    clock.now += 4.9
    assert await cache.get(("summary", 7), compute) == {"run": 1} and compute.runs == 1
    assert await cache.get(("summary", 30), compute) == {"run": 2}, "another range is another entry"
    clock.now += 0.1
    assert await cache.get(("summary", 7), compute) == {"run": 3} and cache.computations == 3


async def test_a_failure_is_not_kept_and_a_caller_that_leaves_cancels_nothing() -> None:
    clock, compute = Clock(), Counted()
    cache: SingleFlightCache[dict[str, int]] = SingleFlightCache(5.0, clock=clock)

    async def broken() -> dict[str, int]:
        raise OSError("the store is away")

    with pytest.raises(OSError, match="away"):
        await cache.get("k", broken)
    leaving = asyncio.create_task(cache.get("k", compute))
    staying = asyncio.create_task(cache.get("k", compute))
    await settle()
    leaving.cancel()
    compute.release.set()
    assert await staying == {"run": 1} and leaving.cancelled()
    assert await cache.get("k", compute) == {"run": 1} and cache.computations == 2


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = proxy_settings("http://127.0.0.1:9", outcome_log={
        "enabled": True, "url": f"sqlite:///{tmp_path}/outcomes.sqlite", "spool_path": None,
        "flush_interval_ms": 20})
    built = Services.build(settings)
    assert built.recorder is not None
    await built.recorder.log.start()
    yield built
    await built.recorder.log.stop()


async def write(services: Services, items: list[OutcomeRecord]) -> None:
    assert services.recorder is not None
    for item in items:
        assert services.recorder.log.submit(item)
    await services.recorder.log.flush()


async def test_the_summary_reads_the_store_once_per_ttl(services: Services) -> None:
    clock = Clock()
    services.dashboard = DashboardState(summaries=SingleFlightCache(5.0, clock=clock))
    first = records()
    await write(services, first)
    together = await asyncio.gather(*(cached_summary(services, 7) for _ in range(4)))
    assert all(data is together[0] for data in together) and services.dashboard.summaries.computations == 1
    assert together[0]["totals"]["requests"] == len(first)
    await write(services, [dataclasses.replace(item, request_id=item.request_id + "-2") for item in first])
    clock.now += 4.0
    again = await cached_summary(services, 7)
    assert again["totals"]["requests"] == len(first) and services.dashboard.summaries.computations == 1
    clock.now += 1.0
    fresh = await cached_summary(services, 7)
    assert fresh["totals"]["requests"] == 2 * len(first) and services.dashboard.summaries.computations == 2
    assert (await cached_summary(services, 1))["days"] == 1 and services.dashboard.summaries.computations == 3
