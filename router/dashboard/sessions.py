"""The dashboard's sign-in sessions: the cookie holds a random opaque token, never the admin key.

A session is kept by the SHA-256 of its token (so a dump of the store cannot be replayed as a cookie), with the
digest of the admin key that signed in and its expiry. Every use checks that key again (router/auth.py,
`identify_digest`): a key revoked, removed from the config or no longer an admin stops its sessions at once (a
key store's revocation within `auth.refresh_interval_s`, as for keys in headers). Sign-out deletes the session.

Where sessions live: in Redis when the services have a shared state (`state.redis_url`), so every replica knows
them; else in this process (one replica). While Redis cannot be reached, sign-ins and lookups fall back to this
process's own sessions, so the dashboard stays usable on the replica that signed in.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from router.storage.redis_health import RedisHealth

SESSION_TTL_S = 12 * 3600
"""How long a sign-in lasts (the cookie's max-age, and the session's own expiry)."""
MAX_LOCAL_SESSIONS = 10_000
"""The most sessions one process keeps (the oldest is dropped first)."""
TOKEN_BYTES = 32
Clock = Callable[[], float]


def token_digest(token: str) -> str:
    """The store's key of a session token (the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class Session:
    """Who signed in (the SHA-256 digest of their admin key, never the key) and until when (Unix seconds)."""

    key_sha256: str
    expires_at: float


class SessionStore(Protocol):
    """Sessions by their token's digest."""

    async def put(self, digest: str, session: Session, ttl_s: float) -> None:
        """Keep a session for `ttl_s` seconds."""
        ...

    async def get(self, digest: str) -> Session | None:
        """The session, if it is kept."""
        ...

    async def delete(self, digest: str) -> None:
        """Forget a session (nothing when it is not kept)."""
        ...


class LocalSessions:
    """Sessions in this process, at most MAX_LOCAL_SESSIONS (expired ones dropped as new ones come)."""

    def __init__(self, clock: Clock = time.time, limit: int = MAX_LOCAL_SESSIONS) -> None:
        self._clock = clock
        self._limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    async def put(self, digest: str, session: Session, ttl_s: float) -> None:
        """Keep a session (its own `expires_at` bounds it)."""
        now = self._clock()
        for old in [key for key, kept in self._sessions.items() if kept.expires_at <= now]:
            del self._sessions[old]
        self._sessions[digest] = session
        while len(self._sessions) > self._limit:
            self._sessions.popitem(last=False)

    async def get(self, digest: str) -> Session | None:
        """The session, if it is kept."""
        return self._sessions.get(digest)

    async def delete(self, digest: str) -> None:
        """Forget a session."""
        self._sessions.pop(digest, None)


class RedisSessions:
    """Sessions in the shared Redis (every replica sees them), each expiring with its session; while Redis cannot
    be reached, the process's own sessions stand in."""

    dependency = "redis"

    def __init__(self, health: RedisHealth, prefix: str, fallback: LocalSessions) -> None:
        self._health = health
        self._prefix = f"{prefix}:dashboard:session:"
        self._fallback = fallback
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            self._client = self._health.client()
        return self._client

    async def put(self, digest: str, session: Session, ttl_s: float) -> None:
        """Keep a session in Redis (here, while Redis is away)."""
        from router.storage.redis_health import StateUnavailable

        value = orjson.dumps({"key_sha256": session.key_sha256, "expires_at": session.expires_at})
        milliseconds = max(int(ttl_s * 1000), 1)
        try:
            await self._health.run(self.dependency, lambda: self._redis().set(self._prefix + digest, value,
                                                                               px=milliseconds))
        except StateUnavailable:
            await self._fallback.put(digest, session, ttl_s)

    async def get(self, digest: str) -> Session | None:
        """The session from Redis, else one this process kept while Redis was away."""
        from router.storage.redis_health import StateUnavailable

        try:
            raw = await self._health.run(self.dependency, lambda: self._redis().get(self._prefix + digest))
        except StateUnavailable:
            raw = None
        if raw is None:
            return await self._fallback.get(digest)
        data = orjson.loads(raw)
        return Session(str(data["key_sha256"]), float(data["expires_at"]))

    async def delete(self, digest: str) -> None:
        """Forget a session everywhere it may be (a sign-out while Redis is away is retried by nobody: the session
        still ends at its expiry)."""
        from router.storage.redis_health import StateUnavailable

        await self._fallback.delete(digest)
        try:
            await self._health.run(self.dependency, lambda: self._redis().delete(self._prefix + digest))
        except StateUnavailable:
            pass

    async def close(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class Sessions:
    """Opens, resolves and closes dashboard sessions."""

    def __init__(self, store: SessionStore, *, ttl_s: float = SESSION_TTL_S, clock: Clock = time.time) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def build(cls, health: RedisHealth | None, prefix: str, clock: Clock = time.time) -> Sessions:
        """In Redis when there is a shared one (`health`), else in this process."""
        local = LocalSessions(clock)
        return cls(RedisSessions(health, prefix, local) if health is not None else local, clock=clock)

    async def open(self, key_sha256: str) -> str:
        """A new session for the admin key with this digest: its token, for the cookie."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        await self.store.put(token_digest(token), Session(key_sha256, self._clock() + self.ttl_s), self.ttl_s)
        return token

    async def resolve(self, token: str) -> str | None:
        """The key digest of a live session, or None (unknown, signed out or expired: an expired one is dropped)."""
        digest = token_digest(token)
        session = await self.store.get(digest)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            await self.store.delete(digest)
            return None
        return session.key_sha256

    async def close(self, token: str) -> None:
        """End a session (sign-out, or its key no longer valid)."""
        await self.store.delete(token_digest(token))

    async def stop(self) -> None:
        """Close the store's connections."""
        if isinstance(self.store, RedisSessions):
            await self.store.close()
