"""Budgets: the value types, the admission rule and the counters kept in this process.

Contract. A keyed request is admitted while every budget of its scopes (`key:<id>`, `user:<name>`,
`tier:<name>`) has room: the USD spent in the period (the UTC day, the UTC month) plus what requests in flight
hold is below the limit. Admission then holds the request's worst-case cost (its estimate) in every one of its
scopes, and the record step settles the hold with the actual cost (`Hold.settle`); a request that ends without
a ledger entry gives its hold back (`Hold.release`). Because a request is admitted only while
`spent + held < limit`, and every admitted request holds at least its actual cost, the spend of a period ends
below `limit + one request's estimate` (the last one admitted); an estimate that falls short (an input-token
estimate that undercounts, extra draft samples) adds its shortfall. A refused request charges nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

Period = Literal["daily", "monthly"]
RefusalReason = Literal["exhausted", "held"]
"""exhausted: the period's spend reached the limit; held: the rest is held by requests in flight."""
PERIODS: tuple[Period, ...] = ("daily", "monthly")
GRACE_S = 2 * 86400.0
"""Shared counters outlive their period by this long."""


@dataclass(frozen=True)
class BudgetLimits:
    """The USD budgets of one scope (None: no budget)."""

    daily_usd: float | None = None
    monthly_usd: float | None = None

    @property
    def any(self) -> bool:
        """Whether any budget is set."""
        return self.daily_usd is not None or self.monthly_usd is not None

    def limit(self, period: Period) -> float | None:
        """The budget of a period."""
        return self.daily_usd if period == "daily" else self.monthly_usd


@dataclass(frozen=True)
class BudgetScope:
    """Who shares a budget: `key:<id>`, `user:<name>` or `tier:<name>`."""

    name: str
    limits: BudgetLimits

    @property
    def kind(self) -> str:
        """key, user or tier."""
        return self.name.partition(":")[0]


@dataclass(frozen=True)
class Periods:
    """The UTC day and month a request falls in, and when each ends (epoch seconds)."""

    day: str
    month: str
    day_ends_at: float
    month_ends_at: float

    @classmethod
    def at(cls, moment: float) -> Periods:
        """The periods of a moment (epoch seconds)."""
        now = datetime.fromtimestamp(moment, tz=UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
        next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
        return cls(now.strftime("%Y-%m-%d"), now.strftime("%Y-%m"), (midnight + timedelta(days=1)).timestamp(),
                   next_month.timestamp())

    def key(self, period: Period) -> str:
        """The counter's period name: `d:2025-01-31` or `m:2025-01`."""
        return f"d:{self.day}" if period == "daily" else f"m:{self.month}"

    def ends_at(self, period: Period) -> float:
        """When a period ends."""
        return self.day_ends_at if period == "daily" else self.month_ends_at


@dataclass(frozen=True)
class BudgetRefusal:
    """Why a request was refused: which scope's budget of which period, and how it stands."""

    scope: str
    period: Period
    reason: RefusalReason
    limit_usd: float
    spent_usd: float
    held_usd: float
    resets_at: float

    @property
    def kind(self) -> str:
        """The scope's kind (key, user, tier)."""
        return self.scope.partition(":")[0]

    def message(self) -> str:
        """A message for the client."""
        when = "today (UTC)" if self.period == "daily" else "this month (UTC)"
        reset = datetime.fromtimestamp(self.resets_at, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if self.reason == "exhausted":
            return (f"{self.period} budget of {self.limit_usd:.2f} USD of {self.scope} is spent ({self.spent_usd:.4f} "
                    f"USD {when}); it resets at {reset}")
        left = max(0.0, self.limit_usd - self.spent_usd)
        return (f"the rest of the {self.period} budget of {self.limit_usd:.2f} USD of {self.scope} ({left:.4f} USD) "
                f"is held by requests in flight; retry when they end")

    def retry_after_s(self, now: float) -> int:
        """Seconds to wait: until the period resets, or a moment for requests in flight to end."""
        return max(1, int(self.resets_at - now) + 1) if self.reason == "exhausted" else 2


@dataclass(frozen=True)
class SpentTotal:
    """The persisted spend of one scope in one period (`Periods.key`), to start counters from."""

    scope: str
    period: str
    usd: float


class HoldBackend(Protocol):
    """The counters a hold is settled with."""

    def settle(self, hold: Hold, actual_usd: float, holding: bool) -> None:
        """Add the actual cost to the hold's periods, and give the hold back when it is still `holding`."""


class Hold:
    """One admitted request's reservation: settled once with its actual cost, or released without one."""

    def __init__(self, backend: HoldBackend, scopes: Sequence[BudgetScope], amount_usd: float,
                 periods: Periods) -> None:
        self.lease = secrets.token_hex(8)
        self.scopes = tuple(scopes)
        self.amount_usd = amount_usd
        self.periods = periods
        self._backend = backend
        self.settled: float | None = None
        self.released = False

    def settle(self, actual_usd: float) -> None:
        """Charge the actual cost and give the reservation back (once; later calls are ignored)."""
        if self.settled is not None:
            return
        self.settled = max(0.0, actual_usd)
        holding, self.released = not self.released, True
        self._backend.settle(self, self.settled, holding)

    def release(self) -> None:
        """Give the reservation back without a cost (a request that ended before the record step)."""
        if not self.released:
            self.released = True
            self._backend.settle(self, 0.0, True)


@dataclass(frozen=True)
class BudgetDecision:
    """Admitted with a hold, or refused."""

    hold: Hold | None = None
    refusal: BudgetRefusal | None = None


class BudgetCounters(Protocol):
    """Where spend and holds are counted."""

    async def reserve(self, scopes: Sequence[BudgetScope], amount_usd: float, periods: Periods) -> BudgetDecision:
        """Admit (holding the amount in every scope) or refuse (holding nothing)."""

    async def seed(self, totals: Sequence[SpentTotal], periods: Periods) -> None:
        """Start counters that do not exist yet from the persisted spend."""

    async def close(self) -> None:
        """Finish background work and release connections."""


def judge(scopes: Sequence[BudgetScope], periods: Periods, spent: Iterable[tuple[float, float]],
          held: Iterable[float]) -> BudgetRefusal | None:
    """The refusal for a request, if any: `spent` is (daily, monthly) spend per scope, `held` what requests in
    flight hold per scope. An exhausted budget is reported before one held by requests in flight."""
    first_held: BudgetRefusal | None = None
    for scope, (daily, monthly), holding in zip(scopes, spent, held, strict=True):
        for period, used in zip(PERIODS, (daily, monthly), strict=True):
            limit = scope.limits.limit(period)
            if limit is None:
                continue
            if used >= limit:
                return BudgetRefusal(scope.name, period, "exhausted", limit, used, holding, periods.ends_at(period))
            if used + holding >= limit and first_held is None:
                first_held = BudgetRefusal(scope.name, period, "held", limit, used, holding, periods.ends_at(period))
    return first_held


class MemoryBudgets:
    """Counters in this process: exact for one replica (asyncio-safe: nothing awaits between check and hold)."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str, str], float] = {}
        self._held: dict[str, dict[str, float]] = {}
        self._current: tuple[str, str] | None = None

    def _roll(self, periods: Periods) -> None:
        """Forget the spend of periods that ended."""
        current = (periods.key("daily"), periods.key("monthly"))
        if current != self._current:
            self._current = current
            self._spent = {name: usd for name, usd in self._spent.items() if name[1] in current}

    async def reserve(self, scopes: Sequence[BudgetScope], amount_usd: float, periods: Periods) -> BudgetDecision:
        """Admit or refuse at once."""
        return self.reserve_now(scopes, amount_usd, periods)

    def reserve_now(self, scopes: Sequence[BudgetScope], amount_usd: float, periods: Periods) -> BudgetDecision:
        """The decision, synchronously."""
        self._roll(periods)
        spent = [(self.spent(scope.name, periods.key("daily")), self.spent(scope.name, periods.key("monthly")))
                 for scope in scopes]
        refusal = judge(scopes, periods, spent, [self.held(scope.name) for scope in scopes])
        if refusal is not None:
            return BudgetDecision(refusal=refusal)
        hold = Hold(self, scopes, amount_usd, periods)
        for scope in scopes:
            self._held.setdefault(scope.name, {})[hold.lease] = amount_usd
        return BudgetDecision(hold=hold)

    def settle(self, hold: Hold, actual_usd: float, holding: bool) -> None:
        """Give the hold back and add the cost to the periods it was admitted in (those still counted)."""
        for scope in hold.scopes:
            leases = self._held.get(scope.name)
            if holding and leases is not None:
                leases.pop(hold.lease, None)
                if not leases:
                    del self._held[scope.name]
        self.add(hold.scopes, hold.periods, actual_usd)

    def add(self, scopes: Iterable[BudgetScope], periods: Periods, usd: float) -> None:
        """Add spend to the scopes' counters of the periods (ignored for periods that already ended)."""
        if usd <= 0.0:
            return
        for scope in scopes:
            for period in (periods.key("daily"), periods.key("monthly")):
                if self._current is None or period in self._current:
                    self._spent[(scope.name, period)] = self._spent.get((scope.name, period), 0.0) + usd

    async def seed(self, totals: Sequence[SpentTotal], periods: Periods) -> None:
        """Start counters from the persisted spend (counters that exist already are kept)."""
        self.seed_now(totals, periods)

    def seed_now(self, totals: Sequence[SpentTotal], periods: Periods) -> None:
        """`seed`, synchronously."""
        self._roll(periods)
        for total in totals:
            if total.period in (self._current or ()):
                self._spent.setdefault((total.scope, total.period), total.usd)

    def spent(self, scope: str, period: str) -> float:
        """The spend counted for a scope in a period (`Periods.key`)."""
        return self._spent.get((scope, period), 0.0)

    def held(self, scope: str) -> float:
        """What requests in flight hold in a scope."""
        return sum(self._held.get(scope, {}).values())

    async def close(self) -> None:
        """Nothing to close."""
