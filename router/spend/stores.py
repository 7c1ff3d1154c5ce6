"""Where spend rows live: a SQLite file (embedded, WAL, written on worker threads) or a PostgreSQL table (shared by
every replica, through asyncpg). Rows are keyed by request id, so a row written twice (a spool replayed after a
write whose acknowledgement was lost) is kept once."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from router.spend.records import (
    COLUMNS,
    TABLE,
    SpendRecord,
    UsageQuery,
    UsageRow,
    scope_totals_sql,
    usage_row,
    usage_sql,
)

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
ScopeSpend = tuple[str, str, str | None, str | None, float]
"""(day, key id, user, tier, USD)."""
_REAL = {"created_at", "actual_usd", "strong_only_usd", "wasted_usd"}
_TEXT = {"request_id", "day", "tenant", "user_name", "key_id", "tier", "endpoint", "model", "route"}
_NULLABLE = {"user_name", "key_id", "tier", "strong_only_usd"}


def _schema(real: str, integer: str) -> tuple[str, ...]:
    def kind(name: str) -> str:
        base = "TEXT" if name in _TEXT else real if name in _REAL else integer
        return base + (" PRIMARY KEY" if name == "request_id" else "" if name in _NULLABLE else " NOT NULL")

    return (f"CREATE TABLE IF NOT EXISTS {TABLE} ({', '.join(f'{name} {kind(name)}' for name in COLUMNS)})",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_day ON {TABLE} (day, tenant)")


class SpendStore(Protocol):
    """The spend table on one backend."""

    url: str

    async def write(self, records: Sequence[SpendRecord]) -> None:
        """Insert rows in one transaction (rows already there are skipped)."""

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """The sums a query asks for, by day first."""

    async def scope_totals(self, since_day: str) -> list[ScopeSpend]:
        """Keyed spend per day, key, user and tier from a day on."""

    async def close(self) -> None:
        """Release connections."""


def open_spend_store(url: str) -> SpendStore:
    """The store a URL names (nothing is opened before it is used)."""
    if url.startswith("sqlite:///"):
        return SQLiteSpendStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresSpendStore(url)
    raise ValueError(f"not a spend ledger URL: {url!r}")


class SQLiteSpendStore:
    """Rows in one SQLite file; every operation on a worker thread, one at a time, on one connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url[len("sqlite:///"):])
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            try:
                connection.row_factory = sqlite3.Row
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                for statement in _schema("REAL", "INTEGER"):
                    connection.execute(statement)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _write(self, records: Sequence[SpendRecord]) -> None:
        with self._lock:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
                                       f"({', '.join('?' for _ in COLUMNS)}) ON CONFLICT (request_id) DO NOTHING",
                                       [record.row() for record in records])
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def _read(self, sql: str, parameters: Sequence[object]) -> list[sqlite3.Row]:
        if self._connection is None and not self.path.exists():
            return []  # nothing was ever written: nothing to read, no file created
        with self._lock:
            return list(self._connect().execute(sql, tuple(parameters)))

    async def write(self, records: Sequence[SpendRecord]) -> None:
        """Insert rows (on a worker thread)."""
        await asyncio.to_thread(self._write, records)

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """The sums a query asks for."""
        sql, parameters = usage_sql(query, lambda _: "?")
        return [usage_row(row) for row in await asyncio.to_thread(self._read, sql, parameters)]

    async def scope_totals(self, since_day: str) -> list[ScopeSpend]:
        """Keyed spend per day, key, user and tier from a day on."""
        rows = await asyncio.to_thread(self._read, scope_totals_sql(lambda _: "?"), [since_day])
        return [(row["day"], row["key_id"], row["user_name"], row["tier"], float(row["usd"])) for row in rows]

    def _close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    async def close(self) -> None:
        """Close the connection."""
        await asyncio.to_thread(self._close)


class PostgresSpendStore:
    """Rows in a PostgreSQL table, shared by every replica pointed at the database (a small pool, opened on first
    use and again after a failure)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: Any = None
        self._lock: asyncio.Lock | None = None

    async def _acquire_pool(self) -> Any:
        import asyncpg

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._pool is None:
                pool = await asyncpg.create_pool(self.url, min_size=1, max_size=2, timeout=CONNECT_TIMEOUT_S,
                                                 command_timeout=COMMAND_TIMEOUT_S)
                try:
                    async with pool.acquire() as connection:
                        for statement in _schema("DOUBLE PRECISION", "BIGINT"):
                            await connection.execute(statement)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    async def _run(self, method: str, sql: str, *arguments: Any) -> Any:
        import asyncpg

        pool = await self._acquire_pool()
        try:
            async with pool.acquire() as connection:
                if method == "executemany":
                    async with connection.transaction():
                        return await connection.executemany(sql, *arguments)
                return await getattr(connection, method)(sql, *arguments)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
            self._pool = None
            pool.terminate()
            raise

    async def write(self, records: Sequence[SpendRecord]) -> None:
        """Insert rows in one transaction."""
        placeholders = ", ".join(f"${index + 1}" for index in range(len(COLUMNS)))
        await self._run("executemany", f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders}) "
                        "ON CONFLICT (request_id) DO NOTHING", [record.row() for record in records])

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """The sums a query asks for."""
        sql, parameters = usage_sql(query, lambda index: f"${index}")
        return [usage_row(row) for row in await self._run("fetch", sql, *parameters)]

    async def scope_totals(self, since_day: str) -> list[ScopeSpend]:
        """Keyed spend per day, key, user and tier from a day on."""
        rows = await self._run("fetch", scope_totals_sql(lambda index: f"${index}"), since_day)
        return [(row["day"], row["key_id"], row["user_name"], row["tier"], float(row["usd"])) for row in rows]

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
