"""Key stores in SQL: a SQLite file (the default, in the data directory) or a PostgreSQL table."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from router.auth_keys.records import ADDED_COLUMNS, COLUMNS, StoredKey

TABLE = "cascadeflow_proxy_keys"
_TYPES = ("TEXT PRIMARY KEY", "TEXT NOT NULL UNIQUE", "TEXT NOT NULL", "TEXT", "INTEGER", "INTEGER", "INTEGER",
          "DOUBLE PRECISION NOT NULL", "DOUBLE PRECISION", "DOUBLE PRECISION", "DOUBLE PRECISION",
          "BOOLEAN NOT NULL DEFAULT FALSE")
_TYPE_OF = dict(zip(COLUMNS, _TYPES, strict=True))
SCHEMA = (f"CREATE TABLE IF NOT EXISTS {TABLE} ("
          + ", ".join(f"{name} {kind}" for name, kind in _TYPE_OF.items()) + ")")
MIGRATE = tuple(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {name} {_TYPE_OF[name]}" for name in ADDED_COLUMNS)
"""PostgreSQL: a table made before the budget and admin columns gains them."""
SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY created_at, id"
CONNECT_TIMEOUT_S = 5.0


class SQLiteKeyStore:
    """Keys in one SQLite file (mode 0600), each operation on its own connection in a worker thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url[len("sqlite:///"):])

    def _connect(self) -> sqlite3.Connection:
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(mode=0o600)
        connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        connection.execute(SCHEMA)
        _migrate(connection)
        return connection

    def _create(self, key: StoredKey) -> None:
        connection = self._connect()
        try:
            connection.execute(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                               key.row())
        finally:
            connection.close()

    def _load(self) -> list[StoredKey]:
        if not self.path.exists():  # no key was ever made: nothing to read, nothing created
            return []
        connection = sqlite3.connect(self.path, timeout=10.0)
        try:
            exists = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                        (TABLE,)).fetchone()
            if exists:
                _migrate(connection)
            return [StoredKey.of_row(row) for row in connection.execute(SELECT)] if exists else []
        finally:
            connection.close()

    def _revoke(self, key_id: str, at: float) -> StoredKey | None:
        if not self.path.exists():
            return None
        connection = self._connect()
        try:
            connection.execute(f"UPDATE {TABLE} SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id))
            row = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE id = ?", (key_id,)).fetchone()
            return StoredKey.of_row(row) if row is not None else None
        finally:
            connection.close()

    async def create(self, key: StoredKey) -> None:
        """Store a new key."""
        await asyncio.to_thread(self._create, key)

    async def load(self) -> list[StoredKey]:
        """Every key, oldest first."""
        return await asyncio.to_thread(self._load)

    async def revoke(self, key_id: str) -> StoredKey | None:
        """Revoke a key by id (a key revoked before keeps its first revocation time)."""
        return await asyncio.to_thread(self._revoke, key_id, time.time())

    async def close(self) -> None:
        """Nothing is held open."""


def _migrate(connection: sqlite3.Connection) -> None:
    """A SQLite table made before the budget and admin columns gains them."""
    present = {row[1] for row in connection.execute(f"PRAGMA table_info({TABLE})")}
    for name in ADDED_COLUMNS:
        if name not in present:
            connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {_TYPE_OF[name]}")


class PostgresKeyStore:
    """Keys in a PostgreSQL table, shared by every replica pointed at the database (one connection, opened on
    first use and again after a failure)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: Any = None
        self._lock: asyncio.Lock | None = None
        self._migrated = False

    async def _run(self, method: str, sql: str, *parameters: object) -> Any:
        import asyncpg

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S,
                                                         command_timeout=CONNECT_TIMEOUT_S)
            try:
                return await getattr(self._connection, method)(sql, *parameters)
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                connection, self._connection = self._connection, None
                connection.terminate()
                raise

    async def _migrate(self) -> None:
        if not self._migrated:
            for statement in MIGRATE:
                await self._run("execute", statement)
            self._migrated = True

    async def create(self, key: StoredKey) -> None:
        """Store a new key (the table is created on first use)."""
        await self._run("execute", SCHEMA)
        await self._migrate()
        placeholders = ", ".join(f"${index}" for index in range(1, len(COLUMNS) + 1))
        await self._run("execute", f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders})", *key.row())

    async def load(self) -> list[StoredKey]:
        """Every key, oldest first (none while the table does not exist)."""
        if not await self._run("fetchval", "SELECT to_regclass($1) IS NOT NULL", TABLE):
            return []
        await self._migrate()
        return [StoredKey.of_row(row) for row in await self._run("fetch", SELECT)]

    async def revoke(self, key_id: str) -> StoredKey | None:
        """Revoke a key by id (a key revoked before keeps its first revocation time)."""
        if not await self._run("fetchval", "SELECT to_regclass($1) IS NOT NULL", TABLE):
            return None
        await self._migrate()
        await self._run("execute", f"UPDATE {TABLE} SET revoked_at = EXTRACT(EPOCH FROM clock_timestamp()) "
                        "WHERE id = $1 AND revoked_at IS NULL", key_id)
        row = await self._run("fetchrow", f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE id = $1", key_id)
        return StoredKey.of_row(row) if row is not None else None

    async def close(self) -> None:
        """Close the connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close(timeout=CONNECT_TIMEOUT_S)
