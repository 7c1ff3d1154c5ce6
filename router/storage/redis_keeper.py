"""What one replica keeps doing in the shared Redis for the requests it admitted: renewing the leases of those still
running, and retrying the writes Redis did not take.

The rate limiter's concurrency leases and the budgets' holds both use it. A lease lasts its owner's TTL; the keeper
renews every live lease in one call every `renew_s`, so the leases of a replica that died lapse within that TTL. A
write that failed (Redis away, or no answer within `state.timeout_s`) is kept and made once Redis answers again: at
once when `RedisHealth`'s probe finds it back (`on_recovery`), else by the keeper's loop, which looks every second
and asks for a probe while Redis is down. The loop runs only while there is something to renew or to write. The
kept writes are taken out while they are tried, so none is ever sent twice at once (a write need not be idempotent
to be retried safely while its earlier try failed for sure; one whose try got no answer is the owner's to judge).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from router.storage.redis_health import RedisHealth, StateUnavailable

L = TypeVar("L")
W = TypeVar("W", bound=Hashable)


class RedisKeeper(Generic[L, W]):
    """The live leases (lease → what renewing it needs) and the kept writes of one replica, and the loop that tends
    them."""

    def __init__(self, health: RedisHealth, *, renew: Callable[[Mapping[str, L]], Awaitable[object]],
                 write: Callable[[set[W]], Awaitable[object]], renew_s: float) -> None:
        self.health = health
        self.renew_s = renew_s
        self.live: dict[str, L] = {}
        """Leases of requests still running, renewed every `renew_s`."""
        self.owed: set[W] = set()
        """Writes Redis did not take, made once it answers again."""
        self._retrying: set[W] = set()
        self._renew = renew
        self._write = write
        self._loop: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._stopped = False
        health.on_recovery(self._recovered)

    @property
    def count(self) -> int:
        """Leases held and writes owed (those being retried included)."""
        return len(self.live) + len(self.owed) + len(self._retrying)

    def hold(self, lease: str, data: L) -> None:
        """Renew a lease while its request runs."""
        self.live[lease] = data
        self._keep()

    def drop(self, lease: str) -> L | None:
        """Stop renewing a lease (its request ended); what renewing it needed, if it was live."""
        return self.live.pop(lease, None)

    def owe(self, writes: Iterable[W]) -> None:
        """Keep writes to make once Redis answers (without trying them now)."""
        self.owed.update(writes)
        if self.owed:
            self._keep()

    async def write(self, writes: set[W]) -> None:
        """Make writes now; those Redis does not take are kept."""
        if not writes:
            return
        try:
            await self._write(writes)
        except StateUnavailable:
            self.owe(writes)
        except asyncio.CancelledError:
            self.owe(writes)
            raise

    async def _flush(self) -> None:
        """Try the kept writes again (taken out meanwhile: a concurrent flush sends only newer ones)."""
        writes, self.owed = self.owed, set()
        self._retrying |= writes
        try:
            await self.write(writes)
        finally:
            self._retrying -= writes

    def _keep(self) -> None:
        """Start the loop, unless it runs (or the keeper stopped)."""
        if not self._stopped and (self._loop is None or self._loop.done()):
            self._loop = asyncio.get_running_loop().create_task(self._keep_up())

    async def _keep_up(self) -> None:
        """While leases are live or writes owed: renew the live leases every `renew_s`, and make the owed writes
        once Redis answers (a background PING looks for it every second meanwhile)."""
        tick = min(1.0, self.renew_s)
        loop = asyncio.get_running_loop()
        renewed_at = loop.time()
        while self.live or self.owed:
            await asyncio.sleep(tick)
            if not self.health.healthy:
                self.health.probe_soon()
                continue
            if self.owed:
                await self._flush()
            if self.live and loop.time() - renewed_at >= self.renew_s:
                renewed_at = loop.time()
                try:
                    await self._renew(dict(self.live))
                except StateUnavailable:
                    pass  # the leases last their TTL: the next renewal may still reach them

    def _recovered(self) -> None:
        """Redis answers again: make the owed writes at once."""
        if self.owed and not self._stopped:
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def close(self, last: Callable[[Mapping[str, L]], Iterable[W]]) -> None:
        """Stop renewing and retrying, then make once (when Redis answers) the owed writes and `last(live)`, the
        writes that give back the leases still live."""
        self._stopped = True
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        if self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)
        writes = self.owed | set(last(self.live))
        self.owed, self.live = set(), {}
        if writes and self.health.healthy:
            await self.write(writes)
