"""A short-lived cache of the dashboard's summaries, so a page left open by several admins reads the stores once
per `ttl_s`, not once per refresh.

An entry is keyed by what the summary depends on (its query and the caller's scope). Callers that come while an
entry is being computed wait for that one computation (single flight); the answer is then kept `ttl_s` seconds
from when it was ready. A failed computation is not kept: its waiters get its error, the next caller computes
again. A caller that leaves (a closed page) does not cancel the computation the others wait for.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
SUMMARY_TTL_S = 5.0
"""How long one summary is served again (the page itself refreshes every 60 s)."""
MAX_ENTRIES = 64


@dataclass
class _Entry(Generic[T]):
    task: asyncio.Task[T]
    ready_at: float | None = None


class SingleFlightCache(Generic[T]):
    """Values by key, computed once per `ttl_s` however many callers ask at once."""

    def __init__(self, ttl_s: float = SUMMARY_TTL_S, *, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self.computations = 0
        """How many computations were started (for tests and operators)."""

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """The value for `key`: a fresh one, the one being computed, or a new computation of `compute()`."""
        entry = self._entries.get(key)
        if entry is None or (entry.ready_at is not None and self._clock() - entry.ready_at >= self.ttl_s):
            entry = self._start(key, compute)
        return await asyncio.shield(entry.task)

    def _start(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> _Entry[T]:
        async def run() -> T:
            return await compute()

        entry: _Entry[T] = _Entry(asyncio.get_running_loop().create_task(run()))
        self.computations += 1
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            oldest = next(iter(self._entries))
            if not self._entries[oldest].task.done():
                break  # never drop what callers are waiting for
            del self._entries[oldest]
        entry.task.add_done_callback(lambda task: self._finished(key, entry, task))
        return entry

    def _finished(self, key: Hashable, entry: _Entry[T], task: asyncio.Task[T]) -> None:
        if task.cancelled() or task.exception() is not None:
            if self._entries.get(key) is entry:
                del self._entries[key]
            return
        entry.ready_at = self._clock()

    def clear(self) -> None:
        """Forget every kept value (a computation in flight still answers its waiters)."""
        self._entries.clear()
