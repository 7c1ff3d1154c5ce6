"""What the Redis-backed rate limiter and budgets share: a lazily opened client with its Lua scripts, writes
that run in the background (a request never waits for a settlement), and draining them at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

REDIS_FAILURES = (RedisError, OSError, TimeoutError)
"""What a Redis call raises when Redis is away: the caller falls back to its in-process counters."""


class RedisCounters:
    """The client (opened on first use, its scripts registered) and the background writes of one replica."""

    def __init__(self, url: str, prefix: str, scripts: dict[str, str], timeout_s: float) -> None:
        self.url = url
        self.prefix = prefix
        self.healthy = True
        self.last_error: str | None = None
        self._sources = scripts
        self._timeout_s = timeout_s
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _redis(self) -> Any:
        """The client, opened (and the scripts registered) on first use."""
        if self._client is None:
            self._client = aioredis.from_url(self.url, socket_timeout=self._timeout_s,
                                             socket_connect_timeout=self._timeout_s)
            self._scripts = {name: self._client.register_script(source) for name, source in self._sources.items()}
        return self._client

    def _script(self, name: str) -> Any:
        """A registered Lua script (opens the client first)."""
        self._redis()
        return self._scripts[name]

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the background writes in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish the background writes and close the connection pool."""
        await self.drain()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
