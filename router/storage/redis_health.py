"""Whether the shared Redis answers, as the request path sees it: every call bounded, an outage noticed once and
then never waited on.

The rate limiter and the budgets of one process share one `RedisHealth` (they use the same Redis). Each call runs
under `state.timeout_s`, connecting included. The first failure (refused, reset, no answer in time) marks Redis
down: logged once, counted in `cascadeflow_dependency_errors_total{dependency}` (as is every later call that
could not use it), shown in /ready. While it is down calls fail at once with `StateUnavailable`, and their callers
apply `state.on_failure` (open: their in-process counters decide; closed: a 503 naming the dependency); a
background PING, at most one every PROBE_INTERVAL_S while requests (or /ready) look, finds Redis back, and then
tells those who asked (`on_recovery`: the rate limiter's leases and the budgets' holds whose release or settlement
failed are made then, router/storage/redis_keeper.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from router.auth_keys.store import public_url
from router.shared_state import FailurePolicy

if TYPE_CHECKING:
    from router.metrics import Metrics

logger = logging.getLogger("router.storage.redis")
REDIS_FAILURES = (RedisError, OSError, TimeoutError)
"""What a Redis call raises when Redis is away or stalled (asyncio's timeout is TimeoutError)."""
PROBE_INTERVAL_S = 1.0
T = TypeVar("T")


class StateUnavailable(Exception):
    """Redis could not serve this call: it failed now, or is known to be down."""


def describe_failure(exc: BaseException, timeout_s: float) -> str:
    """A failure as logs and /ready show it (a timeout says how long it waited)."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: no answer within {timeout_s:g} s"
    return f"{type(exc).__name__}: {exc}"


class RedisHealth:
    """One Redis on the request path: its calls bounded, its outages noticed, logged, counted and probed."""

    def __init__(self, url: str, *, on_failure: FailurePolicy = "open", timeout_s: float = 0.5,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.on_failure = on_failure
        self.timeout_s = timeout_s
        self.healthy = True
        self.last_error: str | None = None
        self.errors = 0
        self._metrics = metrics
        self._clock = clock
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._client: Any = None
        self._recovery: list[Callable[[], None]] = []

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) each time a probe finds Redis back after an outage."""
        self._recovery.append(callback)

    @property
    def refuses(self) -> bool:
        """Whether requests that need Redis are refused while it is down (`state.on_failure: closed`)."""
        return self.on_failure == "closed"

    def client(self) -> Any:
        """A new client whose every socket operation is bounded by `timeout_s` (nothing is opened yet)."""
        return aioredis.from_url(self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s)

    async def run(self, dependency: str, work: Callable[[], Awaitable[T]]) -> T:
        """The result of one Redis call made by `dependency` (a metric label), within `timeout_s`; raises
        StateUnavailable, at once while Redis is known to be down."""
        if not self.healthy:
            self._count(dependency)
            self.probe_soon()
            raise StateUnavailable(self.last_error or "Redis is unavailable")
        try:
            return await asyncio.wait_for(work(), self.timeout_s)
        except REDIS_FAILURES as exc:
            self.failed(dependency, exc)
            raise StateUnavailable(self.last_error or "Redis is unavailable") from exc

    def failed(self, dependency: str, exc: BaseException) -> None:
        """Count a failed call, and mark Redis down (logged once per outage)."""
        self.last_error = describe_failure(exc, self.timeout_s)
        self._count(dependency)
        if self.healthy:
            effect = ("requests held to rate limits or budgets are refused with 503" if self.refuses else
                      "each replica counts rate limits and budgets on its own")
            logger.warning("Redis %s unavailable (%s): %s until it is back (state.on_failure: %s)",
                           public_url(self.url), self.last_error, effect, self.on_failure)
        self.healthy = False
        self._next_probe = self._clock() + PROBE_INTERVAL_S

    def _count(self, dependency: str) -> None:
        self.errors += 1
        if self._metrics is not None:
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency=dependency)

    def probe_soon(self) -> None:
        """While Redis is down, PING it in the background (one probe at a time, one per PROBE_INTERVAL_S)."""
        if self.healthy or (self._probe is not None and not self._probe.done()) or self._clock() < self._next_probe:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._next_probe = self._clock() + PROBE_INTERVAL_S
        self._probe = loop.create_task(self._ping())

    async def _ping(self) -> None:
        if self._client is None:
            self._client = self.client()
        try:
            await asyncio.wait_for(self._client.ping(), self.timeout_s)
        except REDIS_FAILURES as exc:
            self.last_error = describe_failure(exc, self.timeout_s)
            self._next_probe = self._clock() + PROBE_INTERVAL_S
            return
        if self.healthy:
            return
        logger.info("Redis %s reachable again: rate limits and budgets are shared by every replica",
                    public_url(self.url))
        self.healthy = True
        for callback in list(self._recovery):
            callback()

    def status(self) -> dict[str, object]:
        """For /ready: never required (an outage degrades, it does not take a replica out of the balancer: every
        replica shares the one Redis); probes it when it was down."""
        self.probe_soon()
        return {"ok": self.healthy, "required": False, "on_failure": self.on_failure, "errors": self.errors,
                "last_error": self.last_error}

    async def close(self) -> None:
        """Stop probing and close the probe's connection (again: nothing)."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
