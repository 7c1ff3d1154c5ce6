"""Budgets shared by every replica: spend counters and holds in Redis, each admission one atomic Lua script.

Per scope: `<prefix>:budget:spent:<scope>:<d:YYYY-MM-DD|m:YYYY-MM>` (USD as a float string, expiring two days
after its period), `<prefix>:budget:held:<scope>` (a hash lease → USD held) and `<prefix>:budget:leases:<scope>`
(a sorted set lease → expiry, so the hold of a replica that died mid-request frees itself after HOLD_TTL_MS).
Holds are settled in the background (the record step cannot wait); this process's own counters mirror every
settlement, and decide alone while Redis cannot be reached (every call is bounded by `state.timeout_s`, an outage
is logged once: router/storage/redis_health.py): then the budget holds per replica, and spend settled during the
outage is not added to the shared counters. With `state.on_failure: closed` a request is refused with a 503
instead.
"""

from __future__ import annotations

from collections.abc import Sequence
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

HOLD_TTL_MS = 30 * 60_000

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
local actual = tonumber(ARGV[2])
for i = 1, #KEYS / 4 do
  local base = 4 * (i - 1)
  redis.call('HDEL', KEYS[base + 3], ARGV[1])
  redis.call('ZREM', KEYS[base + 4], ARGV[1])
  if actual > 0 then
    redis.call('INCRBYFLOAT', KEYS[base + 1], ARGV[2])
    redis.call('PEXPIREAT', KEYS[base + 1], ARGV[3])
    redis.call('INCRBYFLOAT', KEYS[base + 2], ARGV[2])
    redis.call('PEXPIREAT', KEYS[base + 2], ARGV[4])
  end
end
return 1
"""


class RedisBudgets(RedisCounters):
    """Budget counters in Redis, shared by every replica that uses the same URL and prefix."""

    dependency = "budgets"
    refusal = "budgets cannot be checked: the shared state's Redis is unavailable"

    def __init__(self, url: str, prefix: str, *, local: MemoryBudgets | None = None,
                 health: RedisHealth | None = None) -> None:
        super().__init__(url, prefix, {"reserve": RESERVE, "settle": SETTLE}, health)
        self.local = local or MemoryBudgets()

    def spent_key(self, scope: str, period: str) -> str:
        """The Redis key of a scope's spend in a period (`Periods.key`)."""
        return f"{self.prefix}:budget:spent:{scope}:{period}"

    def _keys(self, scopes: Sequence[BudgetScope], periods: Periods) -> list[str]:
        keys: list[str] = []
        for scope in scopes:
            keys += [self.spent_key(scope.name, periods.key(period)) for period in PERIODS]
            keys += [f"{self.prefix}:budget:held:{scope.name}", f"{self.prefix}:budget:leases:{scope.name}"]
        return keys

    async def reserve(self, scopes: Sequence[BudgetScope], amount_usd: float, periods: Periods) -> BudgetDecision:
        """Admit or refuse in one script; while Redis is away this replica's own counters decide (or, closed,
        DependencyUnavailableError)."""
        hold = Hold(self, scopes, amount_usd, periods)
        args: list[int | float | str] = [len(scopes), hold.lease, repr(amount_usd), HOLD_TTL_MS]
        for scope in scopes:
            args += [-1 if limit is None else limit for limit in (scope.limits.daily_usd, scope.limits.monthly_usd)]
        keys = self._keys(scopes, periods)
        reply = await self._decide(lambda: self._script("reserve")(keys=keys, args=args))
        if reply is None:
            return self.local.reserve_now(scopes, amount_usd, periods)
        if int(reply[0]) == 0:
            return BudgetDecision(hold=hold)
        scope, period = scopes[int(reply[0]) - 1], PERIODS[int(reply[1]) - 1]
        limit = scope.limits.limit(period)
        reason: RefusalReason = "exhausted" if _text(reply[2]) == "exhausted" else "held"
        return BudgetDecision(refusal=BudgetRefusal(scope.name, period, reason, float(limit or 0.0),
                                                    float(_text(reply[3])), float(_text(reply[4])),
                                                    periods.ends_at(period)))

    def settle(self, hold: Hold, actual_usd: float, holding: bool) -> None:
        """Settle in Redis in the background, and in this process's own counters now."""
        self.local.settle(hold, actual_usd, holding)
        periods = hold.periods
        args: list[str | int] = [hold.lease, repr(actual_usd), int((periods.day_ends_at + GRACE_S) * 1000),
                                 int((periods.month_ends_at + GRACE_S) * 1000)]
        keys = self._keys(hold.scopes, periods)
        self._spawn(self._in_background(lambda: self._script("settle")(keys=keys, args=args)))

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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
