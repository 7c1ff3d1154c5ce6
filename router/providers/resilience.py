"""Retries and circuit breakers around every upstream call, before any of its answer reaches the client.

`UpstreamGuard.call` runs one attempt function (a JSON request, or opening a stream up to its first bytes)
under the provider's circuit breaker and, when asked, retries it with tenacity: exponential backoff with full
jitter, or the provider's own `retry-after-ms` / `retry-after` when it gives one (up to a cap; a longer one ends
the retries so that the client's SDK waits instead), within a number of attempts and a total time. Attempts
that could not reach the client are the only ones retried: once a stream is handed over, a failure is told to
the breaker and to the client (as an error event), never retried.

What is retried: HTTP 408, 429, 500-599 (529 included) unless the provider says `x-should-retry: false`, and
connection failures (refused, reset, a connect timeout). What the breaker counts as a failure: 5xx, connection
errors, timeouts, a stream that breaks after its first bytes; a 4xx other than 429 is an answer (a success), a
429 neither.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from router.errors import (
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    UpstreamUnreachableError,
)
from router.metrics import Metrics
from router.providers.breaker import BreakerStatus, CircuitBreaker, CircuitOpen, Permit, State
from router.providers.registry import ProviderRegistry
from router.providers.transport import OnStreamFailure, is_connect_timeout
from router.resilience_settings import BreakerSettings, ResilienceSettings, RetrySettings

logger = logging.getLogger("router.providers.resilience")

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

RETRIED_STATUSES = frozenset({408, 429})
_NO_RETRY = RetrySettings(max_retries=0)


def retryable(error: BaseException) -> bool:
    """Whether a failed attempt may be tried again (nothing of it reached the client)."""
    if isinstance(error, UpstreamStatusError):
        should = error.headers.get("x-should-retry", "").lower()
        if should in ("true", "false"):
            return should == "true"
        return error.upstream_status in RETRIED_STATUSES or error.upstream_status >= 500
    if isinstance(error, UpstreamUnreachableError):
        return True
    return isinstance(error, UpstreamTimeoutError) and is_connect_timeout(error)


def reason_of(error: UpstreamError) -> str:
    """A metric label for a failed call: its HTTP status, or what went wrong (never provider text)."""
    if isinstance(error, UpstreamStatusError):
        return str(error.upstream_status)
    if isinstance(error, UpstreamUnavailableError):
        return "circuit_open"
    if isinstance(error, UpstreamTimeoutError):
        return "connect_timeout" if is_connect_timeout(error) else "timeout"
    if isinstance(error, UpstreamUnreachableError):
        return "connection"
    return "malformed"


def health_verdict(error: UpstreamError) -> bool | None:
    """What a failed call says of the provider's health: True failing, False answering, None nothing (a 429)."""
    if isinstance(error, UpstreamStatusError):
        if error.upstream_status == 429:
            return None
        return error.upstream_status >= 500
    return True


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a provider asks for: `retry-after-ms`, else `retry-after` in seconds or as an HTTP date."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _asked_wait(state: RetryCallState) -> float | None:
    """The wait the failed attempt's provider asked for, if any."""
    error = state.outcome.exception() if state.outcome is not None else None
    return retry_after_s(error.headers) if isinstance(error, UpstreamStatusError) else None


class _BackoffOrRetryAfter:
    """tenacity wait: the provider's `retry-after` when it gave one, else exponential backoff with full jitter."""

    def __init__(self, settings: RetrySettings) -> None:
        self._jitter = wait_random_exponential(multiplier=settings.initial_backoff_s, max=settings.max_backoff_s)

    def __call__(self, state: RetryCallState) -> float:
        asked = _asked_wait(state)
        return asked if asked is not None else self._jitter(state)


class _RetryAfterTooLong(stop_base):
    """tenacity stop: the provider asked for a longer wait than the proxy holds a client for."""

    def __init__(self, cap_s: float) -> None:
        self._cap_s = cap_s

    def __call__(self, state: RetryCallState) -> bool:
        asked = _asked_wait(state)
        return asked is not None and asked > self._cap_s


class _PastDeadline(stop_base):
    """tenacity stop: the next wait would end past `max_s` after the first attempt began (tenacity's own
    stop_before_delay counts from its first attempt, which here is the second)."""

    def __init__(self, started: float, max_s: float, clock: Clock) -> None:
        self._started, self._max_s, self._clock = started, max_s, clock

    def __call__(self, state: RetryCallState) -> bool:
        return self._clock() - self._started + (state.upcoming_sleep or 0.0) >= self._max_s


class UpstreamGuard:
    """Each provider's circuit breaker and retry settings, and the one way to call a provider under them."""

    def __init__(self, settings: ResilienceSettings, providers: Mapping[str, tuple[RetrySettings | None,
                 BreakerSettings | None]], metrics: Metrics, *, sleep: Sleep = asyncio.sleep,
                 clock: Clock = time.monotonic) -> None:
        """`providers`: each provider's name with its own retry and breaker settings (None: the section's)."""
        self._metrics = metrics
        self._sleep = sleep
        self._retry = {name: retry or settings.retry for name, (retry, _) in providers.items()}
        self._breakers = {name: CircuitBreaker(breaker or settings.breaker, clock, self._on_change(name))
                          for name, (_, breaker) in providers.items()}
        for name in providers:
            metrics.gauge("cascadeflow_upstream_circuit_open", 0.0, provider=name)

    async def call(self, provider: str, attempt: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """The attempt's result, retried as the provider's settings say (not at all unless `retry`); raises the
        last UpstreamError, or UpstreamUnavailableError while the provider's circuit is open."""
        settings = self._retry.get(provider, _NO_RETRY) if retry else _NO_RETRY
        if settings.max_retries == 0:
            return await self._once(provider, attempt)
        started = time.monotonic()  # real time: the deadline is the client's, not the breaker's clock
        try:  # the first attempt outside tenacity: most calls succeed, and its set-up costs more than the call
            return await self._once(provider, attempt)
        except UpstreamUnavailableError:
            raise
        except UpstreamError as error:
            if not retryable(error):
                raise
            failed: UpstreamError | None = error
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.max_retries + 1)
            | _PastDeadline(started, settings.max_elapsed_s, time.monotonic)
            | _RetryAfterTooLong(settings.max_retry_after_s),
            wait=_BackoffOrRetryAfter(settings), retry=retry_if_exception(retryable), sleep=self._sleep,
            before_sleep=lambda state: self._retrying(provider, state), reraise=True)
        last: UpstreamError | None = failed
        try:
            async for trial in retrying:
                with trial:
                    if failed is not None:  # tenacity's attempt 1 is the one already made
                        replayed, failed = failed, None
                        raise replayed
                    try:
                        return await self._once(provider, attempt)
                    except UpstreamUnavailableError:
                        raise
                    except UpstreamError as error:
                        last = error
                        raise
        except UpstreamUnavailableError:
            if last is not None:  # the circuit opened during the retries: the provider's own answer tells more
                raise last from None
            raise
        raise AssertionError("tenacity ends in a result or an exception")  # pragma: no cover

    def stream_failed(self, provider: str) -> OnStreamFailure:
        """What a stream tells when it breaks after its first bytes: a failure for the provider's breaker."""
        def failed(error: UpstreamError) -> None:
            self._count_error(provider, error)
            breaker = self._breakers.get(provider)
            if breaker is not None:
                breaker.failure(Permit(), error.message)

        return failed

    def status(self, provider: str) -> BreakerStatus | None:
        """The provider's breaker state (None for a provider the guard does not know)."""
        breaker = self._breakers.get(provider)
        return breaker.status() if breaker is not None else None

    async def _once(self, provider: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """One attempt under the breaker: refused at once while it is open; its outcome told to it."""
        breaker = self._breakers.get(provider)
        if breaker is None:
            return await attempt()
        try:
            permit = breaker.acquire()
        except CircuitOpen as refused:
            error = UpstreamUnavailableError(
                f"provider {provider} is failing; it is not called for another {math.ceil(refused.retry_in_s)}s",
                retry_after_s=refused.retry_in_s)
            self._count_error(provider, error)
            raise error from None
        try:
            result = await attempt()
        except UpstreamError as error:
            self._count_error(provider, error)
            verdict = health_verdict(error)
            if verdict is None:
                breaker.release(permit)
            elif verdict:
                breaker.failure(permit, error.message)
            else:
                breaker.success(permit)
            raise
        except BaseException:  # cancelled (the client left, a draft's deadline): no verdict
            breaker.release(permit)
            raise
        breaker.success(permit)
        return result

    def _count_error(self, provider: str, error: UpstreamError) -> None:
        self._metrics.inc("cascadeflow_upstream_call_errors_total", provider=provider, reason=reason_of(error))

    def _retrying(self, provider: str, state: RetryCallState) -> None:
        """Before a retry's wait: counted and logged."""
        error = state.outcome.exception() if state.outcome is not None else None
        reason = reason_of(error) if isinstance(error, UpstreamError) else "other"
        self._metrics.inc("cascadeflow_upstream_retries_total", provider=provider, reason=reason)
        logger.info("retrying provider %s (attempt %d failed: %s) in %.2fs", provider, state.attempt_number,
                    reason, state.upcoming_sleep)

    def _on_change(self, provider: str) -> Callable[[State], None]:
        def changed(state: State) -> None:
            log = logger.warning if state == "open" else logger.info
            log("provider %s circuit %s", provider, state.replace("_", "-"))
            self._metrics.inc("cascadeflow_upstream_circuit_transitions_total", provider=provider, state=state)
            self._metrics.gauge("cascadeflow_upstream_circuit_open", 1.0 if state == "open" else 0.0,
                                provider=provider)

        return changed


def provider_checks(registry: ProviderRegistry, guard: UpstreamGuard | None) -> dict[str, dict[str, object]]:
    """/ready's provider checks, from recent calls (no probe calls): a provider answers unless its session is
    closed or its circuit is open. Readiness needs one that answers (`providers`); one that does not only
    degrades it, so a provider's bad day does not take every replica out of a load balancer at once, and an open
    circuit turns half-open (ready) after its cool-down to let traffic probe it. `base_url` and `last_error` are
    for authenticated callers only."""
    checks: dict[str, dict[str, object]] = {}
    for name, provider in registry.providers.items():
        status = guard.status(name) if guard is not None else None
        check: dict[str, object] = {"ok": provider.is_open and (status is None or status.state != "open"),
                                    "required": False, "base_url": provider.settings.base_url}
        if status is not None:
            check.update(state=status.state, consecutive_failures=status.consecutive_failures,
                         retry_in_s=round(status.retry_in_s, 1), last_error=status.last_error)
        checks[f"provider:{name}"] = check
    answering = sum(1 for check in checks.values() if check["ok"])
    checks["providers"] = {"ok": answering > 0 or not checks, "required": True, "answering": answering,
                           "configured": len(checks)}
    return checks
