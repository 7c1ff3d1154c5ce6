"""Request bodies held in memory: one under `server.max_body_bytes`, all of them together under
`server.max_inflight_body_bytes` (per process).

One body may be 32 MB (Anthropic's own limit), so a few dozen large bodies arriving at once would take the process
past its memory although each is within its limit. A request's body is held from the moment it is read until the
request has ended: its answer sent (a stream to its last byte), or failed, or cancelled, or its client gone; the
raw bytes and what was decoded from them live that long. The hold counts the declared content-length at once,
before a byte is read, or a chunked body's bytes as they arrive. A body that would take the total past the cap is
refused before anything else is done with the request: 429 with `retry-after` (the bodies in flight will have gone
by then), or 413 when it alone is over the cap (waiting would not help). Bodies are read after the caller is
authenticated, so only callers with a valid key (or any, in pass-through) can hold any of the budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.errors import BodiesInFlightError, PayloadTooLargeError

if TYPE_CHECKING:
    from router.metrics import Metrics

RETRY_AFTER_S = 1.0
"""What a 429 asks the client to wait: about one request's time, by which the bodies in flight have changed."""


class BodyBudget:
    """The bytes of request bodies held by the requests in flight of this process, against the two limits."""

    def __init__(self, max_body_bytes: int, max_inflight_bytes: int, metrics: Metrics | None = None) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_inflight_bytes = max_inflight_bytes
        self._metrics = metrics
        self._held = 0

    @property
    def in_flight(self) -> int:
        """The bytes held now."""
        return self._held

    def hold(self) -> BodyHold:
        """A new request's hold (empty until its body is read); release it once the request has ended."""
        return BodyHold(self)

    def _take(self, extra: int, body_size: int, declared: bool) -> None:
        """Add `extra` bytes for a body that is (or says it will be) `body_size` long, or refuse it."""
        if body_size > self.max_body_bytes:
            self._refused("too_large")
            size = f"of {body_size} bytes " if declared else ""
            raise PayloadTooLargeError(f"request body {size}exceeds the limit of {self.max_body_bytes} bytes")
        if body_size > self.max_inflight_bytes:
            self._refused("too_large")
            raise PayloadTooLargeError(f"request body of {body_size}{'' if declared else '+'} bytes exceeds the "
                                       f"limit of {self.max_inflight_bytes} bytes for all request bodies in flight")
        if self._held + extra > self.max_inflight_bytes:
            self._refused("in_flight")
            raise BodiesInFlightError("the proxy is holding as many request bodies as it may "
                                      f"({self.max_inflight_bytes} bytes); retry shortly",
                                      retry_after_s=RETRY_AFTER_S)
        self._held += extra

    def _give(self, size: int) -> None:
        self._held -= size

    def _refused(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("cascadeflow_body_refusals_total", reason=reason)


class BodyHold:
    """One request's share of the budget: it grows as the body is read and is given back once, by `release`."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.bytes = 0
        self.released = False

    def reserve(self, body_size: int, *, declared: bool = False) -> None:
        """Hold `body_size` bytes in all (a declared length, or what has arrived so far); PayloadTooLargeError
        (413) or BodiesInFlightError (429) when the limits do not allow it; nothing is held then."""
        if self.released:
            raise RuntimeError("a released hold takes no more bytes")
        extra = body_size - self.bytes
        if extra > 0:
            self._budget._take(extra, body_size, declared)
            self.bytes = body_size

    def release(self) -> None:
        """Give the bytes back (again: nothing)."""
        if not self.released:
            self.released = True
            self._budget._give(self.bytes)
            self.bytes = 0
