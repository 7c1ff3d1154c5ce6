"""The semantic cache: per-scope FAISS inner-product indexes over normalised vectors, TTL, and two bounds: a number
of entries and a byte budget (`cache.max_bytes`) on what they hold in memory; past either, the oldest are evicted."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from router.cache.index import VectorIndex

if TYPE_CHECKING:
    from router.cache.shared import RedisShare


@dataclass(frozen=True)
class CacheEntry:
    """One stored answer (an Anthropic message as JSON bytes) and what it is found by."""

    entry_id: int
    scope: str
    exact_key: str
    vector: NDArray[np.float32]
    payload: bytes
    created_at: float
    expires_at: float
    meta: dict[str, str] = field(default_factory=dict)


ENTRY_OVERHEAD_BYTES = 2048
"""Memory an entry takes beyond its answer and vectors: the Python objects (entry, keys, metadata, the maps that
find it) and the index's own bookkeeping (HNSW links, id maps). Measured (RSS, 30,000 entries of 2 KB answers):
7.1 KB an entry over 50 flat scopes, 6.6 KB in one HNSW scope; counted: 7.1 KB."""


def entry_bytes(entry: CacheEntry) -> int:
    """What an entry costs in memory, as the byte budget counts it: its answer, its vector twice (the entry's copy
    and the index's), and a fixed overhead."""
    return len(entry.payload) + 2 * int(entry.vector.nbytes) + ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True)
class CacheHit:
    """A served entry, how similar its last turn was, and whether it matched exactly."""

    entry: CacheEntry
    similarity: float
    exact: bool


class SemanticCache:
    """Exact fast path, then similarity within the scope; expired entries are never served."""

    def __init__(self, *, dimension: int, threshold: float, ttl_s: float, capacity: int,
                 max_bytes: int | None = None, share: RedisShare | None = None,
                 directory: Path | None = None) -> None:
        self.threshold = threshold
        self._directory = directory
        self._share = share
        self._own_ids: set[int] = set()
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._max_bytes = max_bytes
        self.bytes = 0
        """What the entries take, as `entry_bytes` counts it."""
        self._index = VectorIndex(dimension)
        self._entries: OrderedDict[int, CacheEntry] = OrderedDict()
        self._exact: dict[str, int] = {}
        self.hits = 0
        self.misses = 0

    async def start(self) -> None:
        """Load the snapshot of the last run; in shared mode, follow the other replicas' entries."""
        if self._directory is not None:
            from router.cache.persist import load_snapshot

            for entry in await asyncio.to_thread(load_snapshot, self._directory):
                self._own_ids.add(entry.entry_id)
                await self._insert(entry)
        if self._share is not None:
            self._share.start(self._insert, self._own_ids.__contains__)

    async def stop(self) -> None:
        """Stop following the other replicas; write the snapshot."""
        if self._share is not None:
            await self._share.stop()
        if self._directory is not None:
            from router.cache.persist import save_snapshot

            await asyncio.to_thread(save_snapshot, self._directory, list(self._entries.values()))

    def status(self) -> dict[str, object]:
        """State for /ready: shared mode is unhealthy (degraded to local) while Redis fails."""
        status: dict[str, object] = {"mode": "embedded", "entries": len(self._entries), "bytes": self.bytes,
                                     "healthy": True, "hits": self.hits, "misses": self.misses}
        if self._share is not None:
            status.update(mode="redis", healthy=self._share.healthy, redis_errors=self._share.errors,
                          last_error=self._share.last_error)
        return status

    def _live(self, entry_id: int, now: float) -> CacheEntry | None:
        entry = self._entries.get(entry_id)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(entry)
            return None
        return entry

    def _drop(self, entry: CacheEntry) -> None:
        if self._entries.pop(entry.entry_id, None) is not None:
            self.bytes -= entry_bytes(entry)
        self._own_ids.discard(entry.entry_id)
        if self._exact.get(entry.exact_key) == entry.entry_id:
            del self._exact[entry.exact_key]
        self._index.remove(entry.scope, entry.entry_id)

    def lookup_exact(self, exact_key: str) -> CacheHit | None:
        """The live entry stored under exactly this key (no embedding needed)."""
        exact_id = self._exact.get(exact_key)
        if exact_id is not None and (entry := self._live(exact_id, time.time())) is not None:
            self.hits += 1
            return CacheHit(entry, 1.0, True)
        return None

    async def lookup(self, scope: str, exact_key: str, vector: NDArray[np.float32],
                     threshold: float | None = None) -> CacheHit | None:
        """The exact entry, else the best live entry of the scope at or above the threshold."""
        exact = self.lookup_exact(exact_key)
        if exact is not None:
            return exact
        return await self.lookup_similar(scope, vector, threshold)

    async def lookup_similar(self, scope: str, vector: NDArray[np.float32],
                             threshold: float | None = None) -> CacheHit | None:
        """The best live entry of the scope at or above the threshold."""
        now = time.time()
        candidates = await asyncio.to_thread(self._index.search, scope, vector, 4)
        for entry_id, similarity in candidates:
            entry = self._live(entry_id, now)
            if entry is not None and similarity >= (self.threshold if threshold is None else threshold):
                self.hits += 1
                return CacheHit(entry, similarity, False)
        self.misses += 1
        return None

    async def remember(self, scope: str, exact_key: str, vector: NDArray[np.float32], payload: bytes,
                       meta: dict[str, str]) -> None:
        """Store an answer; the oldest entries make room past the capacity."""
        now = time.time()
        entry_id = secrets.randbits(62)
        self._own_ids.add(entry_id)
        entry = CacheEntry(entry_id, scope, exact_key, vector, payload, now, now + self._ttl_s, meta)
        await self._insert(entry)
        if self._share is not None:
            await self._share.publish(entry)

    async def _insert(self, entry: CacheEntry) -> None:
        """Index an entry (local, or from another replica); the oldest make room past the capacity or the byte
        budget (an entry larger than the whole budget is not kept)."""
        size = entry_bytes(entry)
        if self._max_bytes is not None and size > self._max_bytes:
            self._own_ids.discard(entry.entry_id)
            return
        exact_key = entry.exact_key
        previous = self._exact.get(exact_key)
        if previous is not None and previous in self._entries:
            self._drop(self._entries[previous])
        self._entries[entry.entry_id] = entry
        self._exact[exact_key] = entry.entry_id
        self.bytes += size
        await asyncio.to_thread(self._index.add, entry.scope, entry.entry_id, entry.vector)
        if entry.entry_id not in self._entries:  # made room for while it was being indexed
            self._index.remove(entry.scope, entry.entry_id)
            return
        self._evict(time.time())

    def _evict(self, now: float) -> None:
        """Oldest first: the expired, then whatever is past the capacity or the byte budget."""
        budget = self._max_bytes
        while self._entries:
            oldest = next(iter(self._entries.values()))
            over = len(self._entries) > self._capacity or (budget is not None and self.bytes > budget)
            if not over and oldest.expires_at > now:
                return
            self._drop(oldest)
