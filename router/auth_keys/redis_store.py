"""Keys in Redis: one hash of key records (JSON by id) and a version counter that replicas poll cheaply.

Keys held in Redis are only as durable as the Redis is: give it persistence (AOF) and no eviction of these keys.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from router.auth_keys.records import StoredKey

TIMEOUT_S = 1.0


class RedisKeyStore:
    """Key records in `<prefix>:keys`; `<prefix>:keys:version` counts changes, so an unchanged store costs one GET."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self._hash = f"{prefix}:keys"
        self._version = f"{prefix}:keys:version"
        self._client: Any = None
        self._cached: tuple[bytes | None, list[StoredKey]] | None = None

    def _redis(self) -> Any:
        if self._client is None:
            self._client = aioredis.from_url(self.url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        return self._client

    async def create(self, key: StoredKey) -> None:
        """Store a new key and announce the change."""
        client = self._redis()
        async with client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._hash, key.id, orjson.dumps(key.to_json()))
            pipe.incr(self._version)
            created, _ = await pipe.execute()
        if not created:
            raise ValueError(f"a key with id {key.id!r} exists already")

    async def load(self) -> list[StoredKey]:
        """Every key; read again only when the version moved."""
        client = self._redis()
        version = await client.get(self._version)
        if self._cached is not None and self._cached[0] == version and version is not None:
            return self._cached[1]
        records = await client.hgetall(self._hash)
        keys = sorted((StoredKey.of_json(orjson.loads(value)) for value in records.values()),
                      key=lambda key: (key.created_at, key.id))
        self._cached = (version, keys)
        return keys

    async def revoke(self, key_id: str) -> StoredKey | None:
        """Revoke a key by id (a key revoked before keeps its first revocation time)."""
        client = self._redis()
        raw = await client.hget(self._hash, key_id)
        if raw is None:
            return None
        key = StoredKey.of_json(orjson.loads(raw))
        if key.active:
            key = key.revoked()
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(self._hash, key_id, orjson.dumps(key.to_json()))
                pipe.incr(self._version)
                await pipe.execute()
        return key

    async def close(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
