"""The circuit breaker's states on a clock moved by hand: closed → open → half-open → closed (or open again)."""

from __future__ import annotations

import pytest

from router.providers.breaker import CircuitBreaker, CircuitOpen, Permit, State
from router.resilience_settings import BreakerSettings


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, cooldown_s: float = 10.0, *, enabled: bool = True
            ) -> tuple[CircuitBreaker, Clock, list[State]]:
    clock, changes = Clock(), []
    settings = BreakerSettings(enabled=enabled, failure_threshold=threshold, cooldown_s=cooldown_s)
    return CircuitBreaker(settings, clock, changes.append), clock, changes


def fail(circuit: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        circuit.failure(circuit.acquire(), "HTTP 529")


def test_opens_after_the_threshold_in_a_row_and_refuses_until_the_cooldown() -> None:
    circuit, clock, changes = breaker(threshold=3, cooldown_s=10)
    fail(circuit, 2)
    circuit.success(circuit.acquire())  # a success starts the count over
    fail(circuit, 2)
    assert circuit.state == "closed" and circuit.status().consecutive_failures == 2
    fail(circuit, 1)
    assert circuit.state == "open" and changes == ["open"]
    clock.now += 4
    with pytest.raises(CircuitOpen) as refused:
        circuit.acquire()
    assert refused.value.retry_in_s == pytest.approx(6.0)
    status = circuit.status()
    assert (status.state, status.retry_in_s, status.last_error) == ("open", pytest.approx(6.0), "HTTP 529")


def test_half_open_lets_one_probe_through_whose_success_closes_the_circuit() -> None:
    circuit, clock, changes = breaker(threshold=1, cooldown_s=5)
    fail(circuit, 1)
    clock.now += 5
    assert circuit.state == "half_open"
    probe = circuit.acquire()
    assert probe.probe
    with pytest.raises(CircuitOpen):
        circuit.acquire()  # one probe at a time
    circuit.success(probe)
    assert circuit.state == "closed" and not circuit.acquire().probe
    assert changes == ["open", "half_open", "closed"]


def test_a_failed_probe_opens_the_circuit_for_another_cooldown() -> None:
    circuit, clock, changes = breaker(threshold=2, cooldown_s=5)
    fail(circuit, 2)
    clock.now += 6
    circuit.failure(circuit.acquire(), "timeout")
    assert circuit.state == "open" and circuit.status().retry_in_s == pytest.approx(5.0)
    assert changes == ["open", "half_open", "open"]


def test_a_probe_that_ends_without_a_verdict_frees_its_slot() -> None:
    circuit, clock, _ = breaker(threshold=1, cooldown_s=1)
    fail(circuit, 1)
    clock.now += 1
    circuit.release(circuit.acquire())
    assert circuit.acquire().probe, "the next call probes instead"


def test_a_late_failure_of_a_call_made_before_the_circuit_opened_does_not_extend_it() -> None:
    circuit, clock, _ = breaker(threshold=1, cooldown_s=10)
    early = circuit.acquire()
    fail(circuit, 1)
    clock.now += 8
    circuit.failure(early, "late")
    assert circuit.status().retry_in_s == pytest.approx(2.0)


def test_disabled_never_opens() -> None:
    circuit, _, changes = breaker(threshold=1, enabled=False)
    fail(circuit, 50)
    assert circuit.acquire() == Permit() and circuit.status().state == "closed" and changes == []
