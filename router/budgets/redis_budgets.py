"""Budgets shared by every replica: spend counters and holds in Redis, each admission one atomic Lua script.

Per scope: `<prefix>:budget:spent:<scope>:<d:YYYY-MM-DD|m:YYYY-MM>` (USD as a float string, expiring two days
after its period), `<prefix>:budget:held:<scope>` (a hash lease → USD held) and `<prefix>:budget:leases:<scope>`
(a sorted set lease → expiry). A hold lasts HOLD_TTL_MS: the replica renews all of its live holds in one call every
HOLD_RENEW_S while their requests run (however long a stream lasts), so the holds of a replica that died free
themselves within HOLD_TTL_MS.

Holds are settled in the background (the record step cannot wait); this process's own counters mirror every
settlement, and decide alone while Redis cannot be reached (every call is bounded by `state.timeout_s`, an outage
is logged once: router/storage/redis_health.py): then the budget holds per replica, and spend of requests admitted
during the outage is not added to the shared counters. A settlement Redis did not take is kept and made once Redis
answers again, and so is the release of a hold whose admission got no answer (it may have been taken); renewals
and retries are router/storage/redis_keeper.py's, shared with the rate limiter's leases. A retried settlement whose
earlier try got no answer may have been applied: it adds its cost only if its hold is still there, so its cost is
not counted twice. Only the few settlements in flight when an outage begins are retried so; one whose hold lapsed
meanwhile (an outage longer than HOLD_TTL_MS) then misses from the shared counters, as does the spend of requests
admitted during the outage (the spend ledger has both), and one whose hold was already given back (a client that
left before the record step) has nothing to check against: its cost may count twice. With `state.on_failure: closed` a
request is refused with a 503 instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from router.budgets.core import (
    GRACE_S,
    PERIODS,
    BudgetDecision,
    BudgetRefusal,
    BudgetScope,
    Hold,
    MemoryBudgets,
    Periods,
    RefusalReason,
    SpentTotal,
)
from router.storage.redis_counters import RedisCounters
from router.storage.redis_health import RedisHealth
from router.storage.redis_keeper import RedisKeeper

HOLD_TTL_MS = 45_000
"""A hold in Redis lasts this long unless its replica renews it (every HOLD_RENEW_S while the request runs)."""
HOLD_RENEW_S = 15.0

RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, lease, amount, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local exhausted, held = nil, nil
for i = 1, n do
  local base = 4 * (i - 1)
  local hkey, zkey = KEYS[base + 3], KEYS[base + 4]
  local expired = redis.call('ZRANGEBYSCORE', zkey, '-inf', now)
  if #expired > 0 then
    redis.call('HDEL', hkey, unpack(expired))
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
  end
  local holding = 0
  for _, value in ipairs(redis.call('HVALS', hkey)) do holding = holding + tonumber(value) end
  for p = 1, 2 do
    local limit = tonumber(ARGV[4 + 2 * (i - 1) + p])
    if limit >= 0 then
      local spent = tonumber(redis.call('GET', KEYS[base + p]) or '0')
      if spent >= limit and exhausted == nil then
        exhausted = {i, p, 'exhausted', tostring(spent), tostring(holding)}
      elseif spent + holding >= limit and held == nil then
        held = {i, p, 'held', tostring(spent), tostring(holding)}
      end
    end
  end
end
if exhausted ~= nil then return exhausted end
if held ~= nil then return held end
for i = 1, n do
  local base = 4 * (i - 1)
  redis.call('HSET', KEYS[base + 3], lease, amount)
  redis.call('ZADD', KEYS[base + 4], now + ttl, lease)
  redis.call('PEXPIRE', KEYS[base + 3], ttl)
  redis.call('PEXPIRE', KEYS[base + 4], ttl)
end
return {0}
"""

SETTLE = """
local actual, only_if_held = tonumber(ARGV[2]), ARGV[5] == '1'
local removed = 0
for i = 1, #KEYS / 4 do
  local base = 4 * (i - 1)
  removed = removed + redis.call('HDEL', KEYS[base + 3], ARGV[1])
  redis.call('ZREM', KEYS[base + 4], ARGV[1])
end
if actual > 0 and (removed > 0 or not only_if_held) then
  for i = 1, #KEYS / 4 do
    local base = 4 * (i - 1)
    redis.call('INCRBYFLOAT', KEYS[base + 1], ARGV[2])
    redis.call('PEXPIREAT', KEYS[base + 1], ARGV[3])
    redis.call('INCRBYFLOAT', KEYS[base + 2], ARGV[2])
    redis.call('PEXPIREAT', KEYS[base + 2], ARGV[4])
  end
end
return removed
"""
"""Gives the hold back and adds the actual cost; `only_if_held` (a retry of a try that got no answer): the cost only
if the hold was still there (else that try was applied)."""

RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local renewed = 0
for i = 1, #KEYS / 2 do
  if redis.call('ZADD', KEYS[2 * i], 'XX', 'CH', now + ttl, ARGV[i + 1]) > 0 then
    renewed = renewed + 1
    redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
    redis.call('PEXPIRE', KEYS[2 * i], ttl)
  end
end
return renewed
"""
"""Pushes back the expiry of holds still there (XX: a hold given back meanwhile is not taken again)."""


@dataclass(eq=False)
class Settlement:
    """One hold's settlement in Redis: its lease taken out of its scopes, its actual cost added to its periods."""

    keys: list[str]
    lease: str
    actual_usd: float
    expires_at_ms: tuple[int, int]
    holding: bool
    """Whether the hold was still held when it was settled (a hold released first has nothing to check against)."""
    unanswered: bool = False
    """A try that carried the cost was sent and got no answer: it may have been applied."""

    def args(self) -> list[str | int]:
        """The settle script's arguments."""
        return [self.lease, repr(self.actual_usd), *self.expires_at_ms, int(self.unanswered and self.holding)]


class RedisBudgets(RedisCounters):
    """Budget counters in Redis, shared by every replica that uses the same URL and prefix."""

    dependency = "budgets"
    refusal = "budgets cannot be checked: the shared state's Redis is unavailable"

    def __init__(self, url: str, prefix: str, *, local: MemoryBudgets | None = None,
                 health: RedisHealth | None = None, hold_ttl_ms: int = HOLD_TTL_MS,
                 renew_s: float = HOLD_RENEW_S) -> None:
        super().__init__(url, prefix, {"reserve": RESERVE, "settle": SETTLE, "renew": RENEW}, health)
        self.local = local or MemoryBudgets()
        self.hold_ttl_ms = hold_ttl_ms
        self._keeper: RedisKeeper[tuple[str, ...], Settlement] = RedisKeeper(
            self.health, renew=self._renew, write=self._settle_all, renew_s=renew_s)
        """Live holds (lease → their scopes' keys, as `_keys` lists them), renewed while their requests run;
        settlements Redis did not take, kept."""

    @property
    def holds_kept(self) -> int:
        """Holds this replica holds in Redis or has yet to settle there."""
        return self._keeper.count

    def spent_key(self, scope: str, period: str) -> str:
        """The Redis key of a scope's spend in a period (`Periods.key`)."""
        return f"{self.prefix}:budget:spent:{scope}:{period}"

    def held_key(self, scope: str) -> str:
        """The Redis key of a scope's holds (a hash lease → USD)."""
        return f"{self.prefix}:budget:held:{scope}"

    def _keys(self, scopes: Sequence[BudgetScope], periods: Periods) -> list[str]:
        keys: list[str] = []
        for scope in scopes:
            keys += [self.spent_key(scope.name, periods.key(period)) for period in PERIODS]
            keys += [self.held_key(scope.name), f"{self.prefix}:budget:leases:{scope.name}"]
        return keys

    async def reserve(self, scopes: Sequence[BudgetScope], amount_usd: float, periods: Periods) -> BudgetDecision:
        """Admit or refuse in one script; while Redis is away this replica's own counters decide (or, closed,
        DependencyUnavailableError)."""
        hold = Hold(self, scopes, amount_usd, periods)
        args: list[int | float | str] = [len(scopes), hold.lease, repr(amount_usd), self.hold_ttl_ms]
        for scope in scopes:
            args += [-1 if limit is None else limit for limit in (scope.limits.daily_usd, scope.limits.monthly_usd)]
        keys = self._keys(scopes, periods)
        sent = self.health.healthy  # while Redis is known to be down nothing is sent
        try:
            reply = await self._decide(lambda: self._script("reserve")(keys=keys, args=args))
        except BaseException:
            self._lost(hold, keys, sent)
            raise
        if reply is None:
            self._lost(hold, keys, sent)
            return self.local.reserve_now(scopes, amount_usd, periods)
        if int(reply[0]) == 0:
            self._keeper.hold(hold.lease, tuple(keys))
            return BudgetDecision(hold=hold)
        scope, period = scopes[int(reply[0]) - 1], PERIODS[int(reply[1]) - 1]
        limit = scope.limits.limit(period)
        reason: RefusalReason = "exhausted" if _text(reply[2]) == "exhausted" else "held"
        return BudgetDecision(refusal=BudgetRefusal(scope.name, period, reason, float(limit or 0.0),
                                                    float(_text(reply[3])), float(_text(reply[4])),
                                                    periods.ends_at(period)))

    def _lost(self, hold: Hold, keys: list[str], sent: bool) -> None:
        """A script sent whose answer never came may have taken its hold: give it back once Redis answers."""
        if sent:
            self._keeper.owe([self._settlement(hold, keys, 0.0, True)])

    def _settlement(self, hold: Hold, keys: list[str], actual_usd: float, holding: bool) -> Settlement:
        periods = hold.periods
        expires = (int((periods.day_ends_at + GRACE_S) * 1000), int((periods.month_ends_at + GRACE_S) * 1000))
        return Settlement(keys, hold.lease, actual_usd, expires, holding)

    def settle(self, hold: Hold, actual_usd: float, holding: bool) -> None:
        """Settle in this process's own counters now, and in Redis in the background (kept, and made later, if
        Redis does not take it)."""
        self.local.settle(hold, actual_usd, holding)
        self._keeper.drop(hold.lease)
        settlement = self._settlement(hold, self._keys(hold.scopes, hold.periods), actual_usd, holding)
        self._spawn(self._keeper.write({settlement}))

    async def _settle_all(self, settlements: set[Settlement]) -> None:
        """Run the settle script for each settlement, pipelined when there are several (StateUnavailable: the
        keeper keeps them all)."""
        calls = [(settlement.keys, settlement.args()) for settlement in settlements]
        if self.health.healthy:  # these tries are sent: without an answer, each cost may have been added
            for settlement in settlements:
                settlement.unanswered = settlement.unanswered or settlement.actual_usd > 0.0
        script = self._script("settle")
        if len(calls) == 1:
            keys, args = calls[0]
            await self._run(lambda: script(keys=keys, args=args))
            return

        async def pipelined() -> None:
            async with self._redis().pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await script(keys=keys, args=args, client=pipe)
                await pipe.execute()

        await self._run(pipelined)

    async def _renew(self, live: Mapping[str, tuple[str, ...]]) -> None:
        """Push back the expiry of every live hold, in one call."""
        keys: list[str] = []
        args: list[int | str] = [self.hold_ttl_ms]
        for lease, held in live.items():
            for base in range(0, len(held), 4):  # each scope's hash and sorted set of holds
                keys += held[base + 2:base + 4]
                args.append(lease)
        if keys:
            await self._run(lambda: self._script("renew")(keys=keys, args=args))

    async def seed(self, totals: Sequence[SpentTotal], periods: Periods) -> None:
        """Start the shared counters that do not exist (a fresh Redis) from the persisted spend, and this
        process's own counters too."""
        self.local.seed_now(totals, periods)
        current = {periods.key(period): periods.ends_at(period) for period in PERIODS}
        wanted = [total for total in totals if total.period in current]
        if not wanted:
            return

        async def start_counters() -> None:
            async with self._redis().pipeline(transaction=False) as pipe:
                for total in wanted:
                    pipe.set(self.spent_key(total.scope, total.period), repr(total.usd), nx=True,
                             pxat=int((current[total.period] + GRACE_S) * 1000))
                await pipe.execute()

        await self._in_background(start_counters)

    async def close(self) -> None:
        """Stop renewing, settle (once, bounded) what is owed and give back the holds still live, then close the
        connections."""
        await self.drain()
        await self._keeper.close(lambda live: [Settlement(list(keys), lease, 0.0, (0, 0), True)
                                               for lease, keys in live.items()])
        await super().close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
