"""The upstream guard with scripted attempts: which failures are retried, how long it waits (the provider's
retry-after, else full jitter), when it stops, and how the circuit breaker answers for a failing provider."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from router.errors import (
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    UpstreamUnreachableError,
)
from router.metrics import Metrics
from router.providers.resilience import UpstreamGuard, retry_after_s
from router.resilience_settings import BreakerSettings, ResilienceSettings, RetrySettings

FAST = RetrySettings(max_retries=2, initial_backoff_s=0.5, max_backoff_s=8.0, max_retry_after_s=10.0)
NO_BREAKER = BreakerSettings(enabled=False)


def status(code: int, **headers: str) -> UpstreamStatusError:
    return UpstreamStatusError(code, b'{"type":"error"}', headers, "anthropic")


def connect_timeout() -> UpstreamTimeoutError:
    error = UpstreamTimeoutError("provider p did not answer in time")
    error.__cause__ = aiohttp.ConnectionTimeoutError("connect")
    return error


class Script:
    """An attempt function that raises or returns the scripted outcomes in turn, counting its calls."""

    def __init__(self, *outcomes: UpstreamError | str, seconds: float = 0.0) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.seconds = seconds

    async def __call__(self) -> str:
        self.calls += 1
        if self.seconds:
            await asyncio.sleep(self.seconds)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, UpstreamError):
            raise outcome
        return outcome


class Harness:
    """A guard over one provider `p`, with its waits recorded instead of slept and a clock moved by hand."""

    def __init__(self, retry: RetrySettings = FAST, breaker: BreakerSettings = NO_BREAKER) -> None:
        self.waits: list[float] = []
        self.now = 0.0
        self.metrics = Metrics()
        self.guard = UpstreamGuard(ResilienceSettings(retry=retry, breaker=breaker), {"p": (None, None)},
                                   self.metrics, sleep=self._sleep, clock=lambda: self.now)

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def call(self, attempt: Callable[[], Awaitable[str]], *, retry: bool = True) -> str:
        return await self.guard.call("p", attempt, retry=retry)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.value(name, provider="p", **labels)


async def test_a_529_then_200_is_retried_once_after_its_retry_after() -> None:
    harness, attempt = Harness(), Script(status(529, **{"retry-after": "2"}), "answer")
    assert await harness.call(attempt) == "answer"
    assert attempt.calls == 2 and harness.waits == [2.0]
    assert harness.metric("cascadeflow_upstream_retries_total", reason="529") == 1
    assert harness.metric("cascadeflow_upstream_call_errors_total", reason="529") == 1


async def test_retry_after_ms_wins_over_retry_after() -> None:
    harness, attempt = Harness(), Script(status(429, **{"retry-after-ms": "150", "retry-after": "3"}), "answer")
    assert await harness.call(attempt) == "answer"
    assert harness.waits == [pytest.approx(0.15)]


async def test_a_retry_after_longer_than_the_cap_is_relayed_at_once() -> None:
    harness, attempt = Harness(), Script(status(429, **{"retry-after": "60"}), "answer")
    with pytest.raises(UpstreamStatusError) as raised:
        await harness.call(attempt)
    assert raised.value.headers["retry-after"] == "60"
    assert attempt.calls == 1 and harness.waits == []


async def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    waits: list[list[float]] = []
    for _ in range(40):
        harness = Harness(RetrySettings(max_retries=3, initial_backoff_s=0.5, max_backoff_s=1.0))
        with pytest.raises(UpstreamStatusError):
            await harness.call(Script(status(500), status(502), status(503), status(529)))
        waits.append(harness.waits)
    assert all(len(w) == 3 for w in waits), "three retries, then the last error"
    for number, cap in enumerate((0.5, 1.0, 1.0)):
        seen = [w[number] for w in waits]
        assert all(0.0 <= wait <= cap for wait in seen)
        assert max(seen) > cap / 2 and min(seen) < cap / 2, "spread over the whole range (full jitter)"


@pytest.mark.parametrize(("error", "calls"), [
    (status(400), 1), (status(401), 1), (status(404), 1), (status(529, **{"x-should-retry": "false"}), 1),
    (status(408), 2), (status(500), 2), (status(503), 2), (status(400, **{"x-should-retry": "true"}), 2),
    (UpstreamUnreachableError("provider p is unreachable (ClientConnectorError)"), 2), (connect_timeout(), 2),
    (UpstreamTimeoutError("provider p sent no first byte within 300s"), 1)])
async def test_what_is_retried(error: UpstreamError, calls: int) -> None:
    attempt = Script(error, "answer")
    harness = Harness()
    if calls == 1:
        with pytest.raises(type(error)):
            await harness.call(attempt)
    else:
        assert await harness.call(attempt) == "answer"
    assert attempt.calls == calls


async def test_attempts_and_total_time_are_bounded() -> None:
    harness, attempt = Harness(), Script(*[status(529)] * 5)
    with pytest.raises(UpstreamStatusError):
        await harness.call(attempt)
    assert attempt.calls == 3, "max_retries: 2"
    slow = Script(status(529), "answer", seconds=0.05)
    with pytest.raises(UpstreamStatusError):
        await Harness(RetrySettings(max_retries=5, initial_backoff_s=0.01, max_elapsed_s=0.03)).call(slow)
    assert slow.calls == 1, "no retry starts after max_elapsed_s"


async def test_no_retries_when_the_caller_says_so() -> None:
    harness, attempt = Harness(), Script(status(529), "answer")
    with pytest.raises(UpstreamStatusError):
        await harness.call(attempt, retry=False)
    assert attempt.calls == 1


async def test_the_breaker_opens_fails_fast_and_half_opens_after_its_cooldown() -> None:
    harness = Harness(RetrySettings(max_retries=0), BreakerSettings(failure_threshold=2, cooldown_s=30))
    for _ in range(2):
        with pytest.raises(UpstreamStatusError):
            await harness.call(Script(status(503)))
    refused = Script("answer")
    with pytest.raises(UpstreamUnavailableError) as raised:
        await harness.call(refused)
    assert refused.calls == 0 and raised.value.retry_after_s == pytest.approx(30)
    assert (raised.value.status, raised.value.kind) == (503, "overloaded_error")
    assert harness.metric("cascadeflow_upstream_circuit_open") == 1
    assert harness.metric("cascadeflow_upstream_call_errors_total", reason="circuit_open") == 1
    harness.now += 30
    gate = asyncio.Event()

    async def probe() -> str:
        await gate.wait()
        return "answer"

    probing = asyncio.create_task(harness.call(probe))
    await asyncio.sleep(0)
    with pytest.raises(UpstreamUnavailableError):
        await harness.call(Script("answer"))  # the probe is out: others still fail fast
    gate.set()
    assert await probing == "answer"
    assert await harness.call(Script("answer")) == "answer"
    status_now = harness.guard.status("p")
    assert status_now is not None and status_now.state == "closed"
    assert harness.metric("cascadeflow_upstream_circuit_open") == 0
    for state in ("open", "half_open", "closed"):
        assert harness.metric("cascadeflow_upstream_circuit_transitions_total", state=state) == 1


async def test_a_circuit_that_opens_during_the_retries_relays_the_providers_own_error() -> None:
    harness = Harness(breaker=BreakerSettings(failure_threshold=2, cooldown_s=30))
    attempt = Script(status(529), status(529), "answer")
    with pytest.raises(UpstreamStatusError) as raised:
        await harness.call(attempt)
    assert raised.value.upstream_status == 529 and attempt.calls == 2


async def test_rate_limits_and_client_errors_do_not_open_the_circuit() -> None:
    harness = Harness(RetrySettings(max_retries=0), BreakerSettings(failure_threshold=1, cooldown_s=30))
    for error in (status(429), status(400), status(429)):
        with pytest.raises(UpstreamStatusError):
            await harness.call(Script(error))
    status_now = harness.guard.status("p")
    assert status_now is not None and status_now.state == "closed"


async def test_a_cancelled_probe_frees_its_slot() -> None:
    harness = Harness(RetrySettings(max_retries=0), BreakerSettings(failure_threshold=1, cooldown_s=1))
    with pytest.raises(UpstreamStatusError):
        await harness.call(Script(status(500)))
    harness.now += 1

    async def hang() -> str:
        await asyncio.Event().wait()
        return "never"

    probing = asyncio.create_task(harness.call(hang))
    await asyncio.sleep(0)
    probing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probing
    assert await harness.call(Script("answer")) == "answer", "the next call may probe"


async def test_a_break_after_the_first_byte_counts_against_the_provider() -> None:
    harness = Harness(RetrySettings(max_retries=0), BreakerSettings(failure_threshold=1, cooldown_s=30))
    harness.guard.stream_failed("p")(UpstreamUnreachableError("the upstream stream broke: ClientPayloadError"))
    status_now = harness.guard.status("p")
    assert status_now is not None and status_now.state == "open"
    assert harness.metric("cascadeflow_upstream_call_errors_total", reason="connection") == 1


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({"retry-after": "0.25"}) == 0.25
    assert retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_s({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": "-3"}) == 0.0
    assert retry_after_s({"retry-after": "whenever"}) is None
    assert retry_after_s({}) is None
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert retry_after_s({"retry-after": date}, now=1_000_000.0) == pytest.approx(30.0)


async def test_an_unknown_provider_is_called_without_retries_or_breaker() -> None:
    guard = UpstreamGuard(ResilienceSettings(), {}, Metrics())
    attempt = Script(status(529))
    with pytest.raises(UpstreamStatusError):
        await guard.call("nobody", attempt)
    assert attempt.calls == 1 and guard.status("nobody") is None
