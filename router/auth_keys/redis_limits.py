"""Rate limits shared by every replica: the GCRA counters and concurrency leases in Redis, each decision one
atomic Lua script (on Redis's own clock), so N replicas together admit exactly the limit.

Counters are `<prefix>:rl:<scope>:<requests|tokens>` (a TAT in ms, expiring when whole again) and concurrency
slots `<prefix>:cc:<scope>` (a sorted set of leases, each expiring after LEASE_TTL_MS should its replica die).
When Redis cannot be reached (every call is bounded by `state.timeout_s`; router/storage/redis_health.py) the
replica falls back to its own counters, or with `state.on_failure: closed` refuses the request with a 503.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from router.auth_keys.limits import (
    LEASE_TTL_MS,
    MINUTE_MS,
    Counter,
    Decision,
    MemoryLimiter,
    Metric,
    Scope,
    Ticket,
    Window,
    counters,
    denial_reason,
    tightest,
    too_large,
)
from router.storage.redis_counters import RedisCounters
from router.storage.redis_health import RedisHealth

ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n_rate, n_conc = tonumber(ARGV[1]), tonumber(ARGV[2])
local lease, lease_ttl, period = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local eps = 0.000001
local wait, blocker = 0, 0
local new_tats = {}
local result = {1, 0, 0}
for i = 1, n_rate do
  local limit, cost = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
  local interval = period / limit
  local base = tonumber(redis.call('GET', KEYS[i]) or 0)
  if base < now then base = now end
  local new_tat = base + cost * interval
  local w = new_tat - now - period
  local remaining, reset
  if w > eps then
    if w > wait then wait, blocker = w, i end
    remaining, reset = math.floor((period - (base - now)) / interval + eps), base - now
  else
    remaining, reset = math.floor((period - (new_tat - now)) / interval + eps), new_tat - now
  end
  if remaining < 0 then remaining = 0 end
  new_tats[i] = new_tat
  result[#result + 1] = remaining
  result[#result + 1] = math.ceil(reset)
end
if blocker == 0 then
  for j = 1, n_conc do
    local key = KEYS[n_rate + j]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= tonumber(ARGV[5 + 2 * n_rate + j]) then
      blocker = -j
      break
    end
  end
end
if blocker ~= 0 then
  result[1], result[2], result[3] = 0, math.ceil(wait), blocker
  return result
end
for i = 1, n_rate do
  redis.call('SET', KEYS[i], string.format('%.3f', new_tats[i]), 'PX', math.ceil(new_tats[i] - now) + 1000)
end
for j = 1, n_conc do
  redis.call('ZADD', KEYS[n_rate + j], now + lease_ttl, lease)
  redis.call('PEXPIRE', KEYS[n_rate + j], lease_ttl)
end
return result
"""

ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
for i = 1, #KEYS do
  local interval = period / tonumber(ARGV[2 * i])
  local delta = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0)
  if delta > 0 and tat < now then tat = now end
  local moved = tat + delta * interval
  if moved > now then
    redis.call('SET', KEYS[i], string.format('%.3f', moved), 'PX', math.ceil(moved - now) + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


class RedisLimiter(RedisCounters):
    """Counters in Redis, shared by every replica that uses the same URL and prefix."""

    dependency = "rate_limiter"
    refusal = "rate limits cannot be checked: the shared state's Redis is unavailable"

    def __init__(self, url: str, prefix: str, *, fallback: MemoryLimiter | None = None,
                 health: RedisHealth | None = None) -> None:
        super().__init__(url, prefix, {"acquire": ACQUIRE, "adjust": ADJUST}, health)
        self.fallback = fallback or MemoryLimiter()

    def rate_key(self, scope: str, metric: Metric) -> str:
        """The Redis key of one rate counter."""
        return f"{self.prefix}:rl:{scope}:{metric}"

    def slots_key(self, scope: str) -> str:
        """The Redis key of one scope's concurrency leases."""
        return f"{self.prefix}:cc:{scope}"

    async def acquire(self, scopes: Sequence[Scope], tokens: int) -> Decision:
        """Admit or refuse in one script; while Redis is away this replica's own counters decide (or, closed,
        DependencyUnavailableError)."""
        refused = too_large(scopes, tokens)
        if refused is not None:
            return refused
        rates = counters(scopes, tokens)
        capped = [scope for scope in scopes if scope.limits.max_concurrent is not None]
        ticket = Ticket(self, scopes, tokens)
        keys = [self.rate_key(c.scope, c.metric) for c in rates] + [self.slots_key(s.name) for s in capped]
        args: list[int | float | str] = [len(rates), len(capped), ticket.lease, LEASE_TTL_MS, MINUTE_MS]
        for counter in rates:
            args += [counter.limit, counter.cost]
        args += [scope.limits.max_concurrent or 0 for scope in capped]
        reply = await self._decide(lambda: self._script("acquire")(keys=keys, args=args))
        if reply is None:
            return self.fallback.acquire_now(scopes, tokens)
        return _decision(reply, rates, capped, ticket)

    def adjust(self, ticket: Ticket, delta: int) -> None:
        """Correct the token counters in the background (the record step cannot wait)."""
        scopes = [scope for scope in ticket.scopes if scope.limits.tpm is not None]
        keys = [self.rate_key(scope.name, "tokens") for scope in scopes]
        args: list[int | float] = [MINUTE_MS]
        for scope in scopes:
            args += [scope.limits.tpm or 1, delta]
        self._spawn(self._in_background(lambda: self._script("adjust")(keys=keys, args=args)))

    def release(self, ticket: Ticket) -> None:
        """Give the leases back in the background."""
        keys = [self.slots_key(scope.name) for scope in ticket.scopes if scope.limits.max_concurrent is not None]
        self._spawn(self._in_background(lambda: self._release(keys, ticket.lease)))

    async def _release(self, keys: list[str], lease: str) -> None:
        async with self._redis().pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, lease)
            await pipe.execute()


def _decision(reply: Sequence[Any], rates: list[Counter], capped: list[Scope], ticket: Ticket) -> Decision:
    """The decision the script returned: {admitted, wait ms, blocker, then remaining and reset ms per counter}."""
    allowed, wait_ms, blocker = int(reply[0]), int(reply[1]), int(reply[2])
    windows = [(counter.metric, Window(counter.limit, int(reply[3 + 2 * index]), int(reply[4 + 2 * index]) / 1000.0))
               for index, counter in enumerate(rates)]
    requests, tokens = tightest(windows, "requests"), tightest(windows, "tokens")
    if allowed:
        return Decision(True, requests, tokens, ticket=ticket)
    if blocker > 0:
        return Decision(False, requests, tokens, wait_ms / 1000.0, denial_reason(rates[blocker - 1]),
                        refused_by=rates[blocker - 1].metric)
    return Decision(False, requests, tokens, 1.0, denial_reason(None, capped[-blocker - 1].name),
                    refused_by="concurrent")
