"""Rate limits shared by every replica: the counters and concurrency leases in Redis, each decision one atomic Lua
script on Redis's own clock (so replicas share one clock), so N replicas together admit exactly the limit.

Requests per minute are `<prefix>:rl:<scope>:requests:log`, a sorted set of the admissions of the last 60 s (scored
by their time); tokens per minute `<prefix>:rl:<scope>:tokens`, a GCRA TAT in ms expiring when whole again;
concurrency slots `<prefix>:cc:<scope>`, a sorted set of leases scored by their expiry. A lease lasts LEASE_TTL_MS:
the replica renews all of its live leases in one call every LEASE_RENEW_S, so the slot of a replica that died
frees itself within LEASE_TTL_MS. A lease whose release failed (Redis away) is kept and given back as soon as
Redis answers again (renewals and retries: router/storage/redis_keeper.py, shared with the budgets' holds). When
Redis cannot be reached (every call is bounded by `state.timeout_s`; router/storage/redis_health.py) the replica
falls back to its own counters, or with `state.on_failure: closed` refuses the request with a 503.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from router.auth_keys.limits import (
    LEASE_RENEW_S,
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
from router.storage.redis_keeper import RedisKeeper

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
  local at = 3 + 3 * i
  local windowed, limit, cost = ARGV[at] == '1', tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local w, refused, remaining, reset = 0, false, 0, 0
  if windowed then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - period)
    local count = redis.call('ZCARD', KEYS[i])
    if count + cost <= limit then
      remaining, reset = limit - count - cost, period
    else
      refused = true
      if cost > limit then
        w = period
      else
        local oldest = redis.call('ZRANGE', KEYS[i], count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
        w = tonumber(oldest[2]) + period - now
      end
      local newest = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
      remaining = limit - count
      if newest[2] then reset = tonumber(newest[2]) + period - now end
    end
  else
    local interval = period / limit
    local base = tonumber(redis.call('GET', KEYS[i]) or 0)
    if base < now then base = now end
    local new_tat = base + cost * interval
    w = new_tat - now - period
    if w > eps then
      refused = true
      remaining, reset = math.floor((period - (base - now)) / interval + eps), base - now
    else
      remaining, reset = math.floor((period - (new_tat - now)) / interval + eps), new_tat - now
    end
    new_tats[i] = new_tat
  end
  if refused and (blocker == 0 or w > wait) then wait, blocker = w, i end
  if remaining < 0 then remaining = 0 end
  result[#result + 1] = remaining
  result[#result + 1] = math.ceil(reset)
end
if blocker == 0 then
  for j = 1, n_conc do
    local key = KEYS[n_rate + j]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= tonumber(ARGV[5 + 3 * n_rate + j]) then
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
  if new_tats[i] == nil then
    for c = 1, tonumber(ARGV[5 + 3 * i]) do redis.call('ZADD', KEYS[i], now, lease .. ':' .. c) end
    redis.call('PEXPIRE', KEYS[i], math.ceil(period) + 1000)
  else
    redis.call('SET', KEYS[i], string.format('%.3f', new_tats[i]), 'PX', math.ceil(new_tats[i] - now) + 1000)
  end
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

RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ttl = tonumber(ARGV[1])
local renewed = 0
for i = 1, #KEYS do
  if redis.call('ZADD', KEYS[i], 'XX', 'CH', now + ttl, ARGV[i + 1]) > 0 then
    renewed = renewed + 1
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return renewed
"""
"""Pushes back the expiry of leases still there (XX: a lease given back meanwhile is not taken again)."""

Entry = tuple[str, str]
"""A sorted set's key and one of its members."""


class RedisLimiter(RedisCounters):
    """Counters in Redis, shared by every replica that uses the same URL and prefix."""

    dependency = "rate_limiter"
    refusal = "rate limits cannot be checked: the shared state's Redis is unavailable"

    def __init__(self, url: str, prefix: str, *, fallback: MemoryLimiter | None = None,
                 health: RedisHealth | None = None, lease_ttl_ms: int = LEASE_TTL_MS,
                 renew_s: float = LEASE_RENEW_S, period_ms: float = MINUTE_MS) -> None:
        super().__init__(url, prefix, {"acquire": ACQUIRE, "adjust": ADJUST, "renew": RENEW}, health)
        self.fallback = fallback or MemoryLimiter()
        self.lease_ttl_ms = lease_ttl_ms
        self.renew_s = renew_s
        self.period_ms = period_ms
        """The length of the rate windows (a minute; tests shorten it)."""
        self._keeper: RedisKeeper[tuple[str, ...], Entry] = RedisKeeper(
            self.health, renew=self._renew, write=self._give_back, renew_s=renew_s)
        """Live leases (lease → its slot keys), renewed while their requests run; releases that failed, kept."""

    def rate_key(self, scope: str, metric: Metric) -> str:
        """The Redis key of one rate counter."""
        return f"{self.prefix}:rl:{scope}:" + ("requests:log" if metric == "requests" else metric)

    def slots_key(self, scope: str) -> str:
        """The Redis key of one scope's concurrency leases."""
        return f"{self.prefix}:cc:{scope}"

    @property
    def leases_held(self) -> int:
        """Leases this replica holds in Redis or has yet to give back."""
        return self._keeper.count

    async def acquire(self, scopes: Sequence[Scope], tokens: int) -> Decision:
        """Admit or refuse in one script; while Redis is away this replica's own counters decide (or, closed,
        DependencyUnavailableError)."""
        refused = too_large(scopes, tokens)
        if refused is not None:
            return refused
        rates = counters(scopes, tokens)
        capped = [scope for scope in scopes if scope.limits.max_concurrent is not None]
        ticket = Ticket(self, scopes, tokens)
        slots = tuple(self.slots_key(scope.name) for scope in capped)
        keys = [self.rate_key(c.scope, c.metric) for c in rates] + list(slots)
        args: list[int | float | str] = [len(rates), len(capped), ticket.lease, self.lease_ttl_ms, self.period_ms]
        for counter in rates:
            args += [int(counter.metric == "requests"), counter.limit, counter.cost]
        args += [scope.limits.max_concurrent or 0 for scope in capped]
        sent = self.health.healthy  # while Redis is known to be down nothing is sent
        try:
            reply = await self._decide(lambda: self._script("acquire")(keys=keys, args=args))
        except BaseException:
            self._lost(slots, ticket.lease, sent)
            raise
        if reply is None:
            self._lost(slots, ticket.lease, sent)
            return self.fallback.acquire_now(scopes, tokens)
        decision = _decision(reply, rates, capped, ticket)
        if decision.allowed and slots:
            self._keeper.hold(ticket.lease, slots)
        return decision

    def _lost(self, slots: tuple[str, ...], lease: str, sent: bool) -> None:
        """A script sent whose answer never came may have taken its lease: give it back with the unreleased."""
        if sent and slots:
            self._keeper.owe((key, lease) for key in slots)

    def adjust(self, ticket: Ticket, delta: int) -> None:
        """Correct the token counters in the background (the record step cannot wait)."""
        scopes = [scope for scope in ticket.scopes if scope.limits.tpm is not None]
        keys = [self.rate_key(scope.name, "tokens") for scope in scopes]
        args: list[int | float] = [self.period_ms]
        for scope in scopes:
            args += [scope.limits.tpm or 1, delta]
        self._spawn(self._in_background(lambda: self._script("adjust")(keys=keys, args=args)))

    def release(self, ticket: Ticket) -> None:
        """Give the leases back in the background (kept, and given back later, if Redis does not answer)."""
        slots = self._keeper.drop(ticket.lease)
        if slots is None:
            slots = tuple(self.slots_key(s.name) for s in ticket.scopes if s.limits.max_concurrent is not None)
        self._spawn(self._keeper.write({(key, ticket.lease) for key in slots}))

    async def _give_back(self, entries: set[Entry]) -> None:
        """Remove leases from their sorted sets in one pipelined call (StateUnavailable: the keeper keeps them)."""

        async def remove() -> None:
            async with self._redis().pipeline(transaction=False) as pipe:
                for key, member in entries:
                    pipe.zrem(key, member)
                await pipe.execute()

        await self._run(remove)

    async def _renew(self, live: Mapping[str, tuple[str, ...]]) -> None:
        """Push back the expiry of every live lease, in one call."""
        keys: list[str] = []
        args: list[int | str] = [self.lease_ttl_ms]
        for lease, slots in live.items():
            keys += slots
            args += [lease] * len(slots)
        if keys:
            await self._run(lambda: self._script("renew")(keys=keys, args=args))

    async def close(self) -> None:
        """Stop renewing, give back (once, bounded) the leases still held, then close the connections."""
        await self.drain()
        await self._keeper.close(lambda live: {(key, lease) for lease, slots in live.items() for key in slots})
        await super().close()


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
