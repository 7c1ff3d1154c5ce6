"""The key store (one interface over SQLite, PostgreSQL and Redis) and each process's cached view of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from router.auth_keys.records import StoredKey
from router.auth_settings import is_redis

logger = logging.getLogger("router.auth_keys")


class KeyStore(Protocol):
    """Where keys made at run time live (as digests); shared by the CLI and every proxy pointed at it."""

    url: str

    async def create(self, key: StoredKey) -> None:
        """Store a new key."""

    async def load(self) -> list[StoredKey]:
        """Every key, revoked ones included (an absent store holds none, and is not created)."""

    async def revoke(self, key_id: str) -> StoredKey | None:
        """Revoke a key by id: the key as revoked, or None when there is no such key."""

    async def close(self) -> None:
        """Release connections."""


def open_key_store(url: str, *, redis_prefix: str = "cascadeflow:auth") -> KeyStore:
    """The store a URL names (nothing is opened until it is used)."""
    if url.startswith("sqlite:///"):
        from router.auth_keys.sql_stores import SQLiteKeyStore

        return SQLiteKeyStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from router.auth_keys.sql_stores import PostgresKeyStore

        return PostgresKeyStore(url)
    if is_redis(url):
        from router.auth_keys.redis_store import RedisKeyStore

        return RedisKeyStore(url, redis_prefix)
    raise ValueError(f"not a key store URL: {url!r}")


class StoreUnavailable(Exception):
    """The key store could not be read and no earlier view of it exists."""


@dataclass
class KeyView:
    """One reading of the store: active keys by digest, digests of revoked keys, and whether any key exists."""

    active: dict[str, StoredKey] = field(default_factory=dict)
    revoked: frozenset[str] = frozenset()

    @property
    def any(self) -> bool:
        """Whether the store holds any key, revoked or not."""
        return bool(self.active or self.revoked)

    @classmethod
    def of(cls, keys: list[StoredKey]) -> KeyView:
        """The view of a list of keys."""
        return cls({key.key_sha256: key for key in keys if key.active},
                   frozenset(key.key_sha256 for key in keys if not key.active))


class KeyDirectory:
    """This process's view of the store, never older than `max_age_s` while the store answers.

    The first request after the view expires reads the store again (one read at a time; the others wait for
    it), so a key revoked at time t is refused by every process from t + max_age_s on. When the store cannot be
    read the last view stays in use (logged once per outage) and the read is retried after `max_age_s`.
    """

    def __init__(self, store: KeyStore | None, max_age_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._max_age_s = max_age_s
        self._clock = clock
        self.view = KeyView()
        self._read_at = float("-inf")
        self._loaded = store is None
        self._lock: asyncio.Lock | None = None
        self.healthy = True
        self.last_error: str | None = None

    @property
    def loaded(self) -> bool:
        """Whether the view reflects a successful reading of the store (or there is no store)."""
        return self._loaded

    async def refresh(self) -> KeyView:
        """The view, read again first when it is older than `max_age_s`."""
        if self.store is None or self._clock() - self._read_at < self._max_age_s:
            return self.view
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            started = self._clock()
            if started - self._read_at < self._max_age_s:
                return self.view
            try:
                keys = await self.store.load()
            except Exception as exc:  # any backend failure: keep the last view, retry later
                self._read_at = started
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.healthy:
                    logger.warning("key store %s unreadable, using the last view of it: %s",
                                   public_url(self.store.url), self.last_error)
                self.healthy = False
                return self.view
            self.view, self._read_at, self._loaded = KeyView.of(keys), started, True
            if not self.healthy:
                logger.info("key store readable again")
            self.healthy = True
            return self.view

    def status(self) -> dict[str, object]:
        """For readiness: whether the store was read, and how many keys are active."""
        return {"ok": self.healthy and self._loaded, "active_keys": len(self.view.active),
                "last_error": self.last_error}


def public_url(url: str) -> str:
    """A store URL without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else f"{scheme}{sep}{user}@{host}"
