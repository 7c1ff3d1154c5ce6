"""A circuit breaker for one upstream: closed → open after N failures in a row → half-open after a cool-down.

    closed     calls pass; each failure adds one, a success resets the count; N in a row open the circuit
    open       calls are refused at once until the cool-down has passed
    half_open  one probe call passes (the others are refused); its success closes the circuit, its failure
               opens it again for another cool-down; a probe that ends without a verdict frees the slot

Time comes from an injected monotonic clock, so tests move it by hand. Not thread-safe: one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from router.resilience_settings import BreakerSettings

State = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]
OnChange = Callable[[State], None]


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; `probe` when it is the half-open circuit's one trial call."""

    probe: bool = False


@dataclass(frozen=True)
class BreakerStatus:
    """What the breaker knows, for readiness and metrics."""

    state: State
    consecutive_failures: int
    retry_in_s: float
    last_error: str | None


class CircuitOpen(Exception):
    """The circuit refuses the call; `retry_in_s` until it lets a probe through."""

    def __init__(self, retry_in_s: float) -> None:
        super().__init__(f"circuit open, retry in {retry_in_s:.1f}s")
        self.retry_in_s = retry_in_s


class CircuitBreaker:
    """The state of one upstream's circuit."""

    def __init__(self, settings: BreakerSettings, clock: Clock = time.monotonic,
                 on_change: OnChange | None = None) -> None:
        self._settings = settings
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._last_error: str | None = None
        self._reported: State = "closed"

    @property
    def state(self) -> State:
        """The state now (an open circuit whose cool-down has passed is half-open)."""
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self._settings.cooldown_s else "open"

    def acquire(self) -> Permit:
        """Leave to call; raises CircuitOpen when the circuit is open or its one probe is already out."""
        if not self._settings.enabled:
            return Permit()
        state = self._report(self.state)
        if state == "closed":
            return Permit()
        if state == "half_open" and not self._probing:
            self._probing = True
            return Permit(probe=True)
        raise CircuitOpen(self._retry_in())

    def success(self, permit: Permit) -> None:
        """The call was answered: the count starts over and the circuit closes (an answer is an answer, even one
        to a call made before the circuit opened)."""
        self._failures = 0
        self._opened_at = None
        if permit.probe:
            self._probing = False
        self._report(self.state)

    def failure(self, permit: Permit, error: str) -> None:
        """The call failed: one more in a row; the threshold (or a failed probe) opens the circuit."""
        self._failures += 1
        self._last_error = error
        if permit.probe:
            self._probing = False
        if not self._settings.enabled:
            return
        if permit.probe or (self._opened_at is None and self._failures >= self._settings.failure_threshold):
            self._opened_at = self._clock()
        self._report(self.state)

    def release(self, permit: Permit) -> None:
        """The call ended without a verdict (cancelled, or a 429): a probe's slot is free again."""
        if permit.probe:
            self._probing = False

    def status(self) -> BreakerStatus:
        """The state, the failures in a row, the seconds until a probe may pass, and the last error."""
        state = self._report(self.state) if self._settings.enabled else "closed"
        return BreakerStatus(state, self._failures, self._retry_in() if state == "open" else 0.0, self._last_error)

    def _retry_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._settings.cooldown_s - self._clock())

    def _report(self, state: State) -> State:
        """Tell `on_change` about a state not reported yet (half-open is seen lazily, when someone looks)."""
        if state != self._reported:
            self._reported = state
            if self._on_change is not None:
                self._on_change(state)
        return state
