"""The key store (one interface over SQLite, PostgreSQL and Redis) and each process's cached view of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from router.auth_keys.records import StoredKey
from router.auth_settings import is_redis
from router.shared_state import FailurePolicy

if TYPE_CHECKING:
    from router.metrics import Metrics

logger = logging.getLogger("router.auth_keys")
SQL_READ_TIMEOUT_S = 5.0
"""The longest a read of the key store may keep requests waiting, by default (the proxy bounds a Redis store's
reads by `state.timeout_s`)."""


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

    The first request after the view expires reads the store again (one read at a time, within `timeout_s`; the
    others wait for it), so a key revoked at time t is refused by every process from t + max_age_s on. When the
    store cannot be read the failure is logged once per outage and counted (`dependency="key_store"`), and no
    request waits for the store again until a read succeeds: the reads go on in the background, one per
    `max_age_s`. Meanwhile `on_failure` decides: open keeps the last view in use, closed stops the view deciding
    (a key from the store gets a 503; keys in the config still work).
    """

    def __init__(self, store: KeyStore | None, max_age_s: float,
                 clock: Callable[[], float] = time.monotonic, *, timeout_s: float = SQL_READ_TIMEOUT_S,
                 on_failure: FailurePolicy = "open", metrics: Metrics | None = None) -> None:
        self.store = store
        self._max_age_s = max_age_s
        self._clock = clock
        self._timeout_s = timeout_s
        self._on_failure = on_failure
        self._metrics = metrics
        self.view = KeyView()
        self._read_at = float("-inf")
        self._loaded = store is None
        self._lock: asyncio.Lock | None = None
        self._reading: asyncio.Task[None] | None = None
        self.healthy = True
        self.last_error: str | None = None

    @property
    def loaded(self) -> bool:
        """Whether the view reflects a successful reading of the store (or there is no store)."""
        return self._loaded

    @property
    def usable(self) -> bool:
        """Whether the view may decide who a stored key is: the store was read, and its last reading did not
        fail, unless `on_failure` is open (then the last view stays in use through an outage)."""
        return self._loaded and (self.healthy or self._on_failure == "open")

    async def refresh(self) -> KeyView:
        """The view, read again first when it is older than `max_age_s` (in the background during an outage)."""
        if self.store is None or self._clock() - self._read_at < self._max_age_s:
            return self.view
        if not self.healthy:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.get_running_loop().create_task(self._read(self.store))
            return self.view
        await self._read(self.store)
        return self.view

    async def _read(self, store: KeyStore) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            started = self._clock()
            if started - self._read_at < self._max_age_s:
                return
            try:
                keys = await asyncio.wait_for(store.load(), self._timeout_s)
            except Exception as exc:  # any backend failure: the view stays as it was, read again later
                self._failed(store, exc, started)
                return
            self.view, self._read_at, self._loaded = KeyView.of(keys), started, True
            if not self.healthy:
                logger.info("key store readable again")
            self.healthy = True

    def _failed(self, store: KeyStore, exc: Exception, started: float) -> None:
        self._read_at = started
        timed_out = isinstance(exc, TimeoutError) and not str(exc)
        self.last_error = f"TimeoutError: no answer within {self._timeout_s:g} s" if timed_out else (
            f"{type(exc).__name__}: {exc}")
        if self._metrics is not None:
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="key_store")
        if self.healthy:
            effect = "keys from it get 503 until it is read again (state.on_failure: closed)" \
                if self._on_failure == "closed" else "using the last view of it"
            logger.warning("key store %s unreadable, %s: %s", public_url(store.url), effect, self.last_error)
        self.healthy = False

    def status(self) -> dict[str, object]:
        """For readiness: whether the store was read, and how many keys are active."""
        return {"ok": self.healthy and self._loaded, "active_keys": len(self.view.active),
                "on_failure": self._on_failure, "last_error": self.last_error}

    async def close(self) -> None:
        """Stop a background read and close the store's connections."""
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        if self.store is not None:
            await self.store.close()


def public_url(url: str) -> str:
    """A store URL without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else f"{scheme}{sep}{user}@{host}"
