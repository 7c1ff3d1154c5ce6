"""Budget counters: the admission rule, holds settled with the actual cost, the overshoot bound, and Redis shared
by two replicas."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import pytest

from router.auth_keys.admission import KeyPrincipal, settle_usage
from router.budgets.core import BudgetLimits, BudgetScope, MemoryBudgets, Periods, SpentTotal
from router.budgets.redis_budgets import RedisBudgets
from router.costs import PriceBook, TokenUsage
from router.ledger import Ledger, LedgerEntry
from router.metrics import Metrics
from tests.auth.helpers import REDIS_URL, drop_prefix, redis_or_skip, redis_prefix

NOON = datetime(2025, 3, 14, 12, 0, tzinfo=UTC).timestamp()
PERIODS = Periods.at(NOON)


def periods_now() -> Periods:
    """The UTC day and month of this moment (Redis expires counters after their period, so shared tests count in the
    present; taken when a test runs, not when the module was collected: a suite may cross midnight)."""
    return Periods.at(time.time())


def test_periods_are_utc_days_and_months() -> None:
    assert (PERIODS.day, PERIODS.month) == ("2025-03-14", "2025-03")
    assert PERIODS.day_ends_at == datetime(2025, 3, 15, tzinfo=UTC).timestamp()
    assert PERIODS.month_ends_at == datetime(2025, 4, 1, tzinfo=UTC).timestamp()
    december = Periods.at(datetime(2025, 12, 31, 23, 59, tzinfo=UTC).timestamp())
    assert december.month_ends_at == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


async def test_admitted_while_below_the_limit_then_exhausted_until_the_next_day() -> None:
    budgets = MemoryBudgets()
    scopes = [BudgetScope("key:a", BudgetLimits(daily_usd=1.0))]
    first = await budgets.reserve(scopes, 0.4, PERIODS)
    assert first.hold is not None and budgets.held("key:a") == pytest.approx(0.4)
    first.hold.settle(0.7)
    first.hold.settle(5.0)  # once only
    first.hold.release()
    assert budgets.spent("key:a", "d:2025-03-14") == pytest.approx(0.7) and budgets.held("key:a") == 0.0
    second = await budgets.reserve(scopes, 0.4, PERIODS)
    assert second.hold is not None
    second.hold.settle(0.35)  # 1.05 spent: over by less than the one request's estimate
    refused = await budgets.reserve(scopes, 0.0, PERIODS)
    assert refused.refusal is not None and refused.hold is None
    assert (refused.refusal.reason, refused.refusal.period, refused.refusal.scope) == ("exhausted", "daily", "key:a")
    assert refused.refusal.retry_after_s(NOON) == 12 * 3600 + 1
    assert "daily budget of 1.00 USD of key:a is spent" in refused.refusal.message()
    tomorrow = Periods.at(NOON + 86400)
    assert (await budgets.reserve(scopes, 0.4, tomorrow)).hold is not None


async def test_holds_of_requests_in_flight_refuse_as_held_and_a_release_gives_them_back() -> None:
    budgets = MemoryBudgets()
    scopes = [BudgetScope("user:u", BudgetLimits(monthly_usd=1.0))]
    holds = [await budgets.reserve(scopes, 0.3, PERIODS) for _ in range(5)]
    assert [decision.hold is not None for decision in holds] == [True] * 4 + [False]  # 0, .3, .6, .9 < 1
    refusal = holds[4].refusal
    assert refusal is not None and refusal.reason == "held" and refusal.retry_after_s(NOON) == 2
    assert "held by requests in flight" in refusal.message()
    assert holds[0].hold is not None
    holds[0].hold.release()  # ended without a cost: its hold comes back, nothing is spent
    assert budgets.held("user:u") == pytest.approx(0.9) and budgets.spent("user:u", "m:2025-03") == 0.0
    assert (await budgets.reserve(scopes, 0.3, PERIODS)).hold is not None


async def test_a_refusal_by_one_scope_holds_nothing_in_the_others() -> None:
    budgets = MemoryBudgets()
    key, tier = BudgetScope("key:k", BudgetLimits(daily_usd=10.0)), BudgetScope("tier:t", BudgetLimits(daily_usd=0.0))
    refused = await budgets.reserve([key, tier], 1.0, PERIODS)
    assert refused.refusal is not None and refused.refusal.scope == "tier:t" and budgets.held("key:k") == 0.0


def test_a_hold_is_settled_with_the_actual_cost_cache_tokens_and_thrown_away_draft_included() -> None:
    ledger = Ledger(PriceBook(), Metrics())
    served = ledger.charge("claude-opus-4-8", TokenUsage(1000, 100, cache_read_tokens=400, cache_write_tokens=500))
    draft = ledger.charge("claude-haiku-4-5", TokenUsage(1000, 50))
    expected = (100 * 5 + 400 * 0.5 + 500 * 6.25 + 100 * 25 + 1000 * 1 + 50 * 5) / 1e6  # USD per million tokens
    budgets, scopes = MemoryBudgets(), (BudgetScope("key:c", BudgetLimits(daily_usd=1.0)),)
    principal = KeyPrincipal(tenant="user:u", mode="proxy_key", key_id="c", user="u", budgets=scopes)
    principal.slot.hold = budgets.reserve_now(scopes, 0.5, PERIODS).hold
    settle_usage(principal, LedgerEntry(served, draft, None))
    assert budgets.spent("key:c", "d:2025-03-14") == pytest.approx(expected) and budgets.held("key:c") == 0.0


async def test_the_overshoot_is_at_most_one_estimate_whatever_the_interleaving() -> None:
    """Requests that each hold an upper bound of their cost never take the spend past limit + one estimate."""
    rng = random.Random(7)
    for _ in range(200):
        budgets, limit, estimate = MemoryBudgets(), rng.uniform(0.5, 5.0), rng.uniform(0.01, 1.0)
        scopes = [BudgetScope("key:x", BudgetLimits(daily_usd=limit))]
        in_flight, spent = [], 0.0
        for _ in range(300):
            if in_flight and rng.random() < 0.5:
                hold = in_flight.pop(rng.randrange(len(in_flight)))
                cost = rng.uniform(0.0, estimate)
                hold.settle(cost)
                spent += cost
            else:
                decision = await budgets.reserve(scopes, estimate, PERIODS)
                if decision.hold is not None:
                    in_flight.append(decision.hold)
        for hold in in_flight:
            hold.settle(estimate)
            spent += estimate
        assert spent < limit + estimate + 1e-9


async def test_seeded_counters_start_from_the_persisted_spend() -> None:
    budgets = MemoryBudgets()
    await budgets.seed([SpentTotal("user:s", "d:2025-03-14", 2.0), SpentTotal("user:s", "m:2025-03", 9.0),
                        SpentTotal("user:s", "d:2025-03-13", 50.0)], PERIODS)
    scopes = [BudgetScope("user:s", BudgetLimits(daily_usd=2.5, monthly_usd=10.0))]
    decision = await budgets.reserve(scopes, 0.1, PERIODS)
    assert decision.hold is not None
    decision.hold.settle(1.0)
    refused = await budgets.reserve(scopes, 0.1, PERIODS)
    assert refused.refusal is not None and refused.refusal.period == "daily"
    assert budgets.spent("user:s", "m:2025-03") == pytest.approx(10.0)


async def test_two_replicas_sharing_redis_hold_one_budget() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    replicas = [RedisBudgets(REDIS_URL, prefix), RedisBudgets(REDIS_URL, prefix)]
    try:
        scopes = [BudgetScope("key:shared", BudgetLimits(daily_usd=1.0, monthly_usd=100.0)),
                  BudgetScope("user:shared", BudgetLimits())]
        burst = await asyncio.gather(*(replicas[index % 2].reserve(scopes, 0.3, periods_now()) for index in range(10)))
        admitted = [decision.hold for decision in burst if decision.hold is not None]
        assert len(admitted) == 4 and all(replica.healthy for replica in replicas)
        assert {decision.refusal.reason for decision in burst if decision.refusal is not None} == {"held"}
        for hold in admitted:
            hold.settle(0.26)  # 1.04 spent in all
        for replica in replicas:
            await replica.drain()
        refused = await replicas[1].reserve(scopes, 0.0, periods_now())
        assert refused.refusal is not None and refused.refusal.reason == "exhausted"
        assert refused.refusal.spent_usd == pytest.approx(1.04) and refused.refusal.held_usd == 0.0
        spent = await client.get(replicas[0].spent_key("key:shared", periods_now().key("monthly")))
        assert float(spent) == pytest.approx(1.04)
        assert await client.ttl(replicas[0].spent_key("key:shared", periods_now().key("daily"))) > 0
        today = periods_now()  # an existing counter stays:
        await replicas[0].seed([SpentTotal("key:shared", today.key("daily"), 0.0)], today)
        assert (await replicas[0].reserve(scopes, 0.0, periods_now())).refusal is not None
    finally:
        for replica in replicas:
            await replica.close()
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_a_fresh_redis_is_seeded_from_the_persisted_spend() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    budgets = RedisBudgets(REDIS_URL, prefix)
    try:
        await budgets.seed([SpentTotal("user:z", periods_now().key("daily"), 3.0)], periods_now())
        refused = await budgets.reserve([BudgetScope("user:z", BudgetLimits(daily_usd=3.0))], 0.1, periods_now())
        assert refused.refusal is not None and refused.refusal.spent_usd == pytest.approx(3.0)
    finally:
        await budgets.close()
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_redis_away_falls_back_to_the_counters_of_the_replica() -> None:
    budgets = RedisBudgets("redis://127.0.0.1:1/0", redis_prefix())
    try:
        scopes = [BudgetScope("key:y", BudgetLimits(daily_usd=0.5))]
        decision = await budgets.reserve(scopes, 0.2, periods_now())
        assert decision.hold is not None and not budgets.healthy and budgets.last_error
        decision.hold.settle(0.6)
        await budgets.drain()
        refused = await budgets.reserve(scopes, 0.2, periods_now())
        assert refused.refusal is not None and refused.refusal.reason == "exhausted"
    finally:
        await budgets.close()
