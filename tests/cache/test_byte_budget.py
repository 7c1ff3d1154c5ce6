"""The semantic cache's byte budget (`cache.max_bytes`): answers and vectors counted, the oldest evicted first."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from router.cache.semantic import ENTRY_OVERHEAD_BYTES, CacheEntry, SemanticCache, entry_bytes
from router.settings import CacheSettings


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_an_entry_counts_its_answer_its_vectors_and_an_overhead() -> None:
    entry = CacheEntry(1, "s", "k", unit(1), b"x" * 10_000, time.time(), time.time() + 60)
    assert entry_bytes(entry) == 10_000 + 2 * 384 * 4 + ENTRY_OVERHEAD_BYTES
    assert CacheSettings().max_bytes == 256 * 1024 * 1024


async def test_the_oldest_entries_make_room_within_the_byte_budget() -> None:
    answer = b"x" * 10_000
    size = 10_000 + 2 * 384 * 4 + ENTRY_OVERHEAD_BYTES
    cache = SemanticCache(dimension=384, threshold=0.9, ttl_s=60, capacity=1000, max_bytes=5 * size + 100)
    for index in range(8):
        await cache.remember("s", f"k{index}", unit(index), answer, {})
    assert cache.status()["entries"] == 5 and cache.bytes == 5 * size <= 5 * size + 100
    assert [cache.lookup_exact(f"k{index}") is not None for index in range(8)] == [False] * 3 + [True] * 5
    assert await cache.lookup_similar("s", unit(0)) is None, "an evicted entry's vector is gone from the index"
    await cache.remember("s", "small", unit(20), b"y" * 100, {})  # fits after one more eviction
    assert cache.lookup_exact("k3") is None and cache.lookup_exact("small") is not None
    await cache.remember("s", "huge", unit(21), b"z" * (6 * size), {})  # larger than the whole budget: not kept
    assert cache.lookup_exact("huge") is None and cache.lookup_exact("k7") is not None
    await cache.remember("s", "k7", unit(7), b"w" * 10, {})  # the same key again: replaced, its bytes given back
    assert cache.bytes == sum(entry_bytes(entry) for entry in cache._entries.values())


async def test_the_entry_count_still_bounds_and_expired_entries_go_first() -> None:
    cache = SemanticCache(dimension=384, threshold=0.9, ttl_s=0.05, capacity=3, max_bytes=10**9)
    for index in range(3):
        await cache.remember("s", f"k{index}", unit(index), b"a", {})
    await asyncio.sleep(0.1)
    await cache.remember("s", "fresh", unit(9), b"b", {})
    assert cache.status()["entries"] == 1 and cache.bytes == entry_bytes(next(iter(cache._entries.values())))
