"""What the Redis-backed rate limiter and budgets share: a lazily opened client with its Lua scripts, every call
bounded and judged by one `RedisHealth` (router/storage/redis_health.py), writes that run in the background (a
request never waits for a settlement), and draining them at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from router.errors import DependencyUnavailableError
from router.storage.redis_health import RedisHealth, StateUnavailable

T = TypeVar("T")


class RedisCounters:
    """The client (opened on first use, its scripts registered) and the background writes of one replica."""

    dependency = "redis"
    """The metric label of this user of Redis (`cascadeflow_dependency_errors_total{dependency}`)."""
    refusal = "the shared state (Redis) cannot be read"
    """What a closed-mode 503 says is down."""

    def __init__(self, url: str, prefix: str, scripts: dict[str, str], health: RedisHealth | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.health = health or RedisHealth(url)
        self._sources = scripts
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def healthy(self) -> bool:
        """Whether Redis answered the last call (or a probe since)."""
        return self.health.healthy

    @property
    def last_error(self) -> str | None:
        """The last failure, for /ready and the logs."""
        return self.health.last_error

    def _redis(self) -> Any:
        """The client, opened (and the scripts registered) on first use."""
        if self._client is None:
            self._client = self.health.client()
            self._scripts = {name: self._client.register_script(source) for name, source in self._sources.items()}
        return self._client

    def _script(self, name: str) -> Any:
        """A registered Lua script (opens the client first)."""
        self._redis()
        return self._scripts[name]

    async def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        """One call within the health's bound; StateUnavailable when Redis cannot serve it."""
        return await self.health.run(self.dependency, work)

    async def _decide(self, work: Callable[[], Awaitable[T]]) -> T | None:
        """A call a request's admission waits for: its reply, or None while Redis is down (this replica's own
        counters decide then), or with `state.on_failure: closed` the request's 503 (DependencyUnavailableError)."""
        try:
            return await self._run(work)
        except StateUnavailable as exc:
            if not self.health.refuses:
                return None
            raise DependencyUnavailableError(f"{self.refusal}; refused rather than served unchecked "
                                             "(state.on_failure: closed): retry shortly",
                                             dependency=self.dependency) from exc

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_background(self, work: Callable[[], Awaitable[object]]) -> None:
        """A background write: bounded like the others; a failure is counted and logged by the health."""
        try:
            await self._run(work)
        except StateUnavailable:
            pass

    async def drain(self) -> None:
        """Wait for the background writes in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish the background writes, close the connection pool and stop probing."""
        await self.drain()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        await self.health.close()
