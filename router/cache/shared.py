"""Redis-shared cache entries: every replica publishes what it stores and indexes what the others stored.

Entries travel on a Redis stream (`<prefix>:events`, trimmed to the cache capacity) with their payload,
vector and expiry; each replica reads the stream from where it left off and adds the entries to its own
FAISS index. Any Redis failure degrades to the replica's local cache: logged once per outage, counted,
shown in /ready, and retried with a backoff; it never fails a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from router.cache.semantic import CacheEntry

logger = logging.getLogger("router.cache.shared")

OnEntry = Callable[[CacheEntry], Awaitable[None]]


def encode_entry(entry: CacheEntry) -> dict[str, bytes]:
    """The stream fields of an entry."""
    return {"id": str(entry.entry_id).encode(), "scope": entry.scope.encode(), "key": entry.exact_key.encode(),
            "vector": entry.vector.astype(np.float32).tobytes(), "payload": entry.payload,
            "created": str(entry.created_at).encode(), "expires": str(entry.expires_at).encode(),
            "meta": orjson.dumps(entry.meta)}


def decode_entry(fields: dict[bytes, bytes]) -> CacheEntry:
    """An entry from its stream fields."""
    return CacheEntry(int(fields[b"id"]), fields[b"scope"].decode(), fields[b"key"].decode(),
                      np.frombuffer(fields[b"vector"], dtype=np.float32).copy(), fields[b"payload"],
                      float(fields[b"created"]), float(fields[b"expires"]), orjson.loads(fields[b"meta"]))


class RedisShare:
    """Publishes local entries and feeds remote ones to the local cache."""

    def __init__(self, url: str, prefix: str, capacity: int, *, timeout_s: float = 0.5) -> None:
        self._client: Any = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._stream = f"{prefix}:events"
        self._capacity = capacity
        self._last_id = "0-0"
        self._task: asyncio.Task[None] | None = None
        self.healthy = False
        self.errors = 0
        self.last_error: str | None = None

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.healthy:
            logger.warning("Redis unavailable, the cache is local to this replica until it returns: %s", exc)
        self.healthy = False

    def _recovered(self) -> None:
        if not self.healthy:
            logger.info("Redis reachable: the cache is shared again")
        self.healthy = True

    async def publish(self, entry: CacheEntry) -> None:
        """Share one entry; a Redis failure only marks the share unhealthy."""
        try:
            await self._client.xadd(self._stream, encode_entry(entry), maxlen=self._capacity, approximate=True)
            self._recovered()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    def start(self, on_entry: OnEntry, own_ids: Callable[[int], bool]) -> None:
        """Follow the stream in the background, feeding entries of other replicas to on_entry."""
        self._task = asyncio.create_task(self._follow(on_entry, own_ids))

    async def _follow(self, on_entry: OnEntry, own_ids: Callable[[int], bool]) -> None:
        backoff = 0.5
        while True:
            try:
                batches = await self._client.xread({self._stream: self._last_id}, count=500, block=250)
                self._recovered()
                backoff = 0.5
                for _, events in batches or []:
                    for event_id, fields in events:
                        self._last_id = event_id.decode() if isinstance(event_id, bytes) else str(event_id)
                        entry = decode_entry(fields)
                        if entry.expires_at > time.time() and not own_ids(entry.entry_id):
                            await on_entry(entry)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError, KeyError, ValueError) as exc:
                self._failed(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def stop(self) -> None:
        """Stop following and close the connection."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()
