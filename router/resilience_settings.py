"""The `resilience` settings section: retries and circuit breakers of upstream calls.

Both apply to every provider; a provider's own `retry` or `breaker` (under `providers.<name>`) replaces the
section's for that provider. Timeouts are per provider (`providers.<name>.connect_timeout_s`, ...), fallback
models per cascade rule or model route (`fallback_models`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RetrySettings(_Strict):
    """Retries of a call that failed before any of its answer reached the client: HTTP 408, 429, 5xx (529
    included) and connection failures. A stream is never retried once its first byte is on its way."""

    max_retries: int = Field(2, ge=0, le=10)
    """Retries after the first attempt (0: none)."""
    initial_backoff_s: float = Field(0.5, gt=0)
    """The first retry waits a random time up to this ("full jitter"); each later one up to twice as long."""
    max_backoff_s: float = Field(8.0, gt=0)
    """The longest random wait between two attempts."""
    max_retry_after_s: float = Field(10.0, ge=0)
    """An upstream's `retry-after` / `retry-after-ms` up to this is waited for instead of the random wait; a
    longer one ends the retries at once and is relayed to the client (whose SDK waits on its own)."""
    max_elapsed_s: float = Field(30.0, gt=0)
    """No retry starts later than this after the first attempt."""

    @model_validator(mode="after")
    def _backoff_order(self) -> RetrySettings:
        if self.initial_backoff_s > self.max_backoff_s:
            raise ValueError(f"initial_backoff_s must not exceed max_backoff_s ({self.max_backoff_s})")
        return self


class BreakerSettings(_Strict):
    """A circuit breaker per provider: after `failure_threshold` failures in a row it opens and calls fail at once
    (or go to a fallback model); after `cooldown_s` one probe call is let through (half-open), whose success
    closes it again. Failures are 5xx (529 included), connection errors, timeouts and streams that break; another
    4xx is an answer (the provider is up), and a 429 neither opens nor closes the circuit."""

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1, le=1000)
    """Consecutive failed calls that open the circuit."""
    cooldown_s: float = Field(30.0, gt=0)
    """How long an open circuit refuses calls before it lets one probe through."""


class ResilienceSettings(_Strict):
    """Retries and circuit breakers for every provider (a provider's own `retry` / `breaker` wins)."""

    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
