"""Rate limits: requests per minute in an exact sliding window, tokens per minute by GCRA, and concurrency caps,
over several scopes at once.

Requests: each scope keeps a log of its admissions in the last 60 s; a request is admitted while fewer than N are
in it, so at most N pass in any 60 s window and N do pass when N or more arrive. A refusal's wait is the time until
the oldest admission leaves the window. Tokens: GCRA (the generic cell rate algorithm) keeps one number per counter,
the theoretical arrival time (TAT), spacing a limit of N a minute `60/N` s a unit with a burst of N; tokens are
charged with the request's estimate on admission and corrected by the real usage when it ends (`Ticket.settle`).
A request is admitted only when every counter of every scope (key, user, tier) admits it, and then all of them are
charged together; a denied request charges nothing. `MemoryLimiter` keeps the counters in this process
(asyncio-safe: nothing awaits between the check and the charge); `router.auth_keys.redis_limits` keeps them in Redis
for every replica.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

MINUTE_MS = 60_000.0
EPSILON_MS = 1e-6
LEASE_TTL_MS = 45_000
"""A concurrency lease in Redis lasts this long unless its replica renews it (every LEASE_RENEW_S while the request
runs): the slot of a replica that died mid-request frees itself after at most this long."""
LEASE_RENEW_S = 15.0
Metric = Literal["requests", "tokens"]
Refusal = Literal["requests", "tokens", "concurrent", "too_large"]
"""Which kind of limit refused a request (a metric label: never a key, a user or a scope name)."""


@dataclass(frozen=True)
class Limits:
    """The limits of one scope (None: no limit)."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return self.rpm is not None or self.tpm is not None or self.max_concurrent is not None


@dataclass(frozen=True)
class Scope:
    """Who shares a set of counters: `key:<id>`, `user:<name>` or `tier:<name>`."""

    name: str
    limits: Limits


@dataclass(frozen=True)
class Counter:
    """One rate counter of one scope."""

    scope: str
    metric: Metric
    limit: int
    cost: int


@dataclass(frozen=True)
class Window:
    """A counter's state for the rate-limit headers."""

    limit: int
    remaining: int
    reset_s: float
    """Seconds until the counter is whole again."""


@dataclass(frozen=True)
class Decision:
    """Admitted (with a ticket to settle and release) or not (with how long to wait and which limit)."""

    allowed: bool
    requests: Window | None = None
    tokens: Window | None = None
    retry_after_s: float = 0.0
    reason: str = ""
    ticket: Ticket | None = None
    refused_by: Refusal | None = None


def counters(scopes: Sequence[Scope], tokens: int) -> list[Counter]:
    """The rate counters a request with this token estimate charges."""
    found: list[Counter] = []
    for scope in scopes:
        if scope.limits.rpm is not None:
            found.append(Counter(scope.name, "requests", scope.limits.rpm, 1))
        if scope.limits.tpm is not None:
            found.append(Counter(scope.name, "tokens", scope.limits.tpm, tokens))
    return found


def gcra(tat: float | None, now: float, limit: int, cost: int, period: float = MINUTE_MS
         ) -> tuple[float, float, Window]:
    """One GCRA step: (new TAT if admitted, wait in ms before it would be, the window after the decision)."""
    interval = period / limit
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * interval
    wait = new_tat - now - period
    if wait > EPSILON_MS:
        return new_tat, wait, Window(limit, max(0, math.floor((period - (base - now)) / interval + EPSILON_MS)),
                                     (base - now) / 1000.0)
    return new_tat, 0.0, Window(limit, max(0, math.floor((period - (new_tat - now)) / interval + EPSILON_MS)),
                                (new_tat - now) / 1000.0)


def sliding(log: deque[float], now: float, limit: int, cost: int, period: float = MINUTE_MS
            ) -> tuple[float, Window]:
    """One step of a sliding-window log (admission times, oldest first; those a period old are dropped): (wait in
    ms before `cost` more would fit, 0 when they fit now; the window after the decision)."""
    while log and log[0] <= now - period:
        log.popleft()
    count = len(log)
    if count + cost <= limit:
        return 0.0, Window(limit, limit - count - cost, period / 1000.0 if cost else _whole(log, now, period))
    wait = period if cost > limit else log[count + cost - limit - 1] + period - now
    return max(wait, 2 * EPSILON_MS), Window(limit, max(0, limit - count), _whole(log, now, period))


def _whole(log: deque[float], now: float, period: float) -> float:
    """Seconds until a log is empty again."""
    return (log[-1] + period - now) / 1000.0 if log else 0.0


def tightest(windows: Sequence[tuple[Metric, Window]], metric: Metric) -> Window | None:
    """The window of a metric with the fewest units left."""
    found = [window for kind, window in windows if kind == metric]
    return min(found, key=lambda window: (window.remaining, -window.reset_s)) if found else None


def too_large(scopes: Sequence[Scope], tokens: int) -> Decision | None:
    """A refusal for a request whose estimate exceeds a whole minute of some token limit (it could never pass)."""
    for scope in scopes:
        if scope.limits.tpm is not None and tokens > scope.limits.tpm:
            return Decision(False, retry_after_s=60.0, tokens=Window(scope.limits.tpm, 0, 60.0),
                            reason=f"the request's ~{tokens} input tokens exceed the limit of {scope.limits.tpm} "
                            f"tokens per minute of {scope.name}", refused_by="too_large")
    return None


def denial_reason(counter: Counter | None, scope: str | None = None) -> str:
    """Which limit refused a request."""
    if counter is not None:
        unit = "requests" if counter.metric == "requests" else "tokens"
        return f"rate limit of {counter.limit} {unit} per minute of {counter.scope} reached"
    return f"limit of concurrent requests of {scope} reached"


class TicketBackend(Protocol):
    """The limiter a ticket gives its corrections and its slots back to."""

    def adjust(self, ticket: Ticket, delta: int) -> None:
        """Charge (or refund) tokens after the fact."""

    def release(self, ticket: Ticket) -> None:
        """Give the concurrency slots back."""


class Ticket:
    """One admitted request: settled once with its real token usage, released once when it is over."""

    def __init__(self, backend: TicketBackend, scopes: Sequence[Scope], tokens: int) -> None:
        self.lease = secrets.token_hex(8)
        self.scopes = tuple(scopes)
        self.tokens = tokens
        self._backend = backend
        self.settled: int | None = None
        self.released = False

    def settle(self, actual_tokens: int) -> None:
        """Replace the token estimate by the real usage (once; later calls are ignored)."""
        if self.settled is not None:
            return
        self.settled = actual_tokens
        delta = actual_tokens - self.tokens
        if delta and any(scope.limits.tpm is not None for scope in self.scopes):
            self._backend.adjust(self, delta)

    def release(self) -> None:
        """Give back the concurrency slots (once)."""
        if not self.released:
            self.released = True
            if any(scope.limits.max_concurrent is not None for scope in self.scopes):
                self._backend.release(self)


class Limiter(Protocol):
    """Admits requests against the limits of their scopes."""

    async def acquire(self, scopes: Sequence[Scope], tokens: int) -> Decision:
        """Admit (charging every counter, taking every slot) or refuse (charging nothing)."""

    async def close(self) -> None:
        """Release connections."""


class MemoryLimiter:
    """Counters in this process: exact for one replica."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[tuple[str, Metric], float] = {}
        self._logs: dict[str, deque[float]] = {}
        self._in_flight: dict[str, int] = {}
        self._operations = 0

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    async def acquire(self, scopes: Sequence[Scope], tokens: int) -> Decision:
        """Admit or refuse at once (no await inside: atomic under asyncio)."""
        return self.acquire_now(scopes, tokens)

    def acquire_now(self, scopes: Sequence[Scope], tokens: int) -> Decision:
        """The decision, synchronously."""
        refused = too_large(scopes, tokens)
        if refused is not None:
            return refused
        now = self._now_ms()
        self._operations += 1
        if self._operations % 4096 == 0:
            self._tats = {name: tat for name, tat in self._tats.items() if tat > now}
            self._logs = {name: log for name, log in self._logs.items() if log and log[-1] > now - MINUTE_MS}
        planned: list[tuple[tuple[str, Metric], float]] = []
        logged: list[tuple[str, int]] = []
        windows: list[tuple[Metric, Window]] = []
        wait, blocker = 0.0, None
        for counter in counters(scopes, tokens):
            if counter.metric == "requests":
                counter_wait, window = sliding(self._logs.setdefault(counter.scope, deque()), now, counter.limit,
                                               counter.cost)
                logged.append((counter.scope, counter.cost))
            else:
                tat_name: tuple[str, Metric] = (counter.scope, counter.metric)
                new_tat, counter_wait, window = gcra(self._tats.get(tat_name), now, counter.limit, counter.cost)
                planned.append((tat_name, new_tat))
            windows.append((counter.metric, window))
            if counter_wait > wait:
                wait, blocker = counter_wait, counter
        requests, token_window = tightest(windows, "requests"), tightest(windows, "tokens")
        if blocker is not None:
            return Decision(False, requests, token_window, wait / 1000.0, denial_reason(blocker),
                            refused_by=blocker.metric)
        for scope in scopes:
            cap = scope.limits.max_concurrent
            if cap is not None and self._in_flight.get(scope.name, 0) >= cap:
                return Decision(False, requests, token_window, 1.0, denial_reason(None, scope.name),
                                refused_by="concurrent")
        for name, new_tat in planned:
            self._tats[name] = new_tat
        for scope_name, cost in logged:
            self._logs[scope_name].extend([now] * cost)
        for scope in scopes:
            if scope.limits.max_concurrent is not None:
                self._in_flight[scope.name] = self._in_flight.get(scope.name, 0) + 1
        return Decision(True, requests, token_window, ticket=Ticket(self, scopes, tokens))

    def adjust(self, ticket: Ticket, delta: int) -> None:
        """Move the token counters by the difference between the real usage and the estimate."""
        now = self._now_ms()
        for scope in ticket.scopes:
            limit = scope.limits.tpm
            if limit is None:
                continue
            name: tuple[str, Metric] = (scope.name, "tokens")
            tat = self._tats.get(name, now)
            moved = max(tat, now) + delta * MINUTE_MS / limit if delta > 0 else tat + delta * MINUTE_MS / limit
            if moved > now:
                self._tats[name] = moved
            else:
                self._tats.pop(name, None)

    def release(self, ticket: Ticket) -> None:
        """Give the ticket's concurrency slots back."""
        for scope in ticket.scopes:
            if scope.limits.max_concurrent is not None:
                left = self._in_flight.get(scope.name, 0) - 1
                if left > 0:
                    self._in_flight[scope.name] = left
                else:
                    self._in_flight.pop(scope.name, None)

    def in_flight(self, scope: str) -> int:
        """Requests of a scope in flight now."""
        return self._in_flight.get(scope, 0)

    async def close(self) -> None:
        """Nothing to close."""

