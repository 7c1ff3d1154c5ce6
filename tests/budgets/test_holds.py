"""Budget holds in the shared Redis: renewed while their requests run, lapsing when their replica stops renewing them,
and settled (or given back) once Redis answers again when the settlement, or the admission's answer, was lost in an
outage; a settlement whose answer was lost is never counted twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from router.budgets.core import BudgetDecision, BudgetLimits, BudgetScope, Hold, Periods
from router.budgets.redis_budgets import RedisBudgets
from router.storage.redis_health import RedisHealth
from tests.auth.helpers import REDIS_URL, RedisRelay, drop_prefix, redis_or_skip, redis_prefix
from tests.budgets.helpers import ReplyLosingRelay, until


def periods_now() -> Periods:
    """The UTC day and month of this moment (Redis expires counters after their period, so shared tests count in the
    present; taken when a test runs, not when the module was collected: a suite may cross midnight)."""
    return Periods.at(time.time())


SCOPES = [BudgetScope("key:holds", BudgetLimits(daily_usd=1.0))]


def hold_of(decision: BudgetDecision) -> Hold:
    assert decision.hold is not None, decision.refusal
    return decision.hold


async def held(client: Any, budgets: RedisBudgets) -> dict[str, float]:
    """The holds the shared Redis has for the scope, lease → USD (read directly, not through the budgets)."""
    values = await client.hgetall(budgets.held_key("key:holds"))
    return {lease.decode(): float(usd) for lease, usd in values.items()}


async def spent(client: Any, budgets: RedisBudgets) -> float:
    """The scope's spend today in the shared Redis."""
    return float(await client.get(budgets.spent_key("key:holds", periods_now().key("daily"))) or 0.0)


@asynccontextmanager
async def budgets_over(relay_type: type[RedisRelay]) -> AsyncIterator[tuple[Any, RedisRelay, RedisBudgets]]:
    """The shared Redis (read directly), a relay to it the test can cut, and budgets that talk through the relay;
    the budgets closed and the test's keys dropped at the end."""
    client, prefix = await redis_or_skip(), redis_prefix()
    try:
        with relay_type(REDIS_URL) as relay:
            budgets = RedisBudgets(relay.url, prefix, health=RedisHealth(relay.url, timeout_s=0.3))
            try:
                yield client, relay, budgets
            finally:
                await budgets.close()
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_live_holds_are_renewed_and_those_of_a_silent_replica_lapse() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    alive = RedisBudgets(REDIS_URL, prefix, hold_ttl_ms=1200, renew_s=0.3)
    silent = RedisBudgets(REDIS_URL, prefix, hold_ttl_ms=1200, renew_s=3600.0)  # like a replica that died
    try:
        kept = hold_of(await alive.reserve(SCOPES, 0.5, periods_now()))
        hold_of(await silent.reserve(SCOPES, 0.5, periods_now()))
        refused = await alive.reserve(SCOPES, 0.5, periods_now())
        assert refused.refusal is not None and refused.refusal.reason == "held"
        assert 0 < await client.pttl(alive.held_key("key:holds")) <= 1200, "the holds' keys expire unless renewed"
        await asyncio.sleep(2.0)  # past the holds' TTL: the live one was renewed, the silent one lapsed
        admitted = hold_of(await alive.reserve(SCOPES, 0.5, periods_now()))  # the lapsed hold is swept here
        assert set(await held(client, alive)) == {kept.lease, admitted.lease}
        assert alive.holds_kept == 2
        admitted.settle(0.1)
        await alive.drain()
        assert set(await held(client, alive)) == {kept.lease} and await spent(client, alive) == pytest.approx(0.1)
        await alive.close()  # a replica that stops gives its holds back
        assert await held(client, alive) == {} and await spent(client, alive) == pytest.approx(0.1)
    finally:
        await alive.close()
        await silent.close()
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_settlements_during_an_outage_are_made_when_redis_answers() -> None:
    async with budgets_over(RedisRelay) as (client, relay, budgets):
        first, second = [hold_of(await budgets.reserve(SCOPES, 0.45, periods_now())) for _ in range(2)]
        relay.cut()
        first.settle(0.2)  # sent, no answer: Redis is found down here
        await budgets.drain()
        second.settle(0.3)  # not sent: Redis is known to be down
        await budgets.drain()
        assert not budgets.healthy and budgets.holds_kept == 2
        assert await held(client, budgets) == {first.lease: 0.45, second.lease: 0.45}, "still held in Redis"
        assert await spent(client, budgets) == 0.0
        relay.restore()
        settled_s = await until(lambda: _settled(client, budgets), within_s=5.0)
        assert budgets.healthy and budgets.holds_kept == 0
        assert await spent(client, budgets) == pytest.approx(0.5), "the actual costs, not the estimates"
        print(f"settled {settled_s:.2f} s after Redis answered again")


async def _settled(client: Any, budgets: RedisBudgets) -> bool:
    return await held(client, budgets) == {}


async def test_a_settlement_whose_answer_was_lost_is_not_counted_twice() -> None:
    async with budgets_over(ReplyLosingRelay) as (client, relay, budgets):
        hold = hold_of(await budgets.reserve(SCOPES, 0.45, periods_now()))
        relay.cut()
        hold.settle(0.2)  # Redis applies it; its answer never comes back
        await budgets.drain()
        assert not budgets.healthy and budgets.holds_kept == 1
        assert await held(client, budgets) == {} and await spent(client, budgets) == pytest.approx(0.2)
        relay.restore()
        await until(lambda: _nothing_kept(budgets), within_s=5.0)
        assert await spent(client, budgets) == pytest.approx(0.2), "the retry found its hold gone"


async def test_a_hold_whose_admission_got_no_answer_is_given_back() -> None:
    async with budgets_over(ReplyLosingRelay) as (client, relay, budgets):
        hold_of(await budgets.reserve(SCOPES, 0.1, periods_now())).release()
        await budgets.drain()
        relay.cut()
        # Redis took it; the replica decides alone
        local = hold_of(await budgets.reserve(SCOPES, 0.45, periods_now()))
        assert not budgets.healthy and budgets.holds_kept == 1
        assert list((await held(client, budgets)).values()) == [0.45], "taken in Redis, answer lost"
        relay.restore()
        await until(lambda: _settled(client, budgets), within_s=5.0)
        assert budgets.holds_kept == 0 and await spent(client, budgets) == 0.0
        local.settle(0.2)  # admitted on this replica's own counters: settled there
        await budgets.drain()
        assert budgets.local.spent("key:holds", periods_now().key("daily")) == pytest.approx(0.2)


async def _nothing_kept(budgets: RedisBudgets) -> bool:
    return budgets.holds_kept == 0
