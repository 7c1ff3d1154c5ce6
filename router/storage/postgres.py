"""The shared outcome log: PostgreSQL through asyncpg, for replicas that train one router on their joint traffic.

The writer thread owns one connection on an event loop of its own (so batches never wait on the proxy's loop);
queries open a short-lived connection on the caller's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from typing import Any

import asyncpg

from router.learning_settings import OutcomeLogSettings
from router.storage.records import (
    ADDED_COLUMNS,
    BOOLEAN_COLUMNS,
    BYTES_COLUMNS,
    INTEGER_COLUMNS,
    JSON_COLUMNS,
    LABEL_COLUMNS,
    REAL_COLUMNS,
    STORED_COLUMNS,
    LabelUpdate,
    OutcomeRecord,
    from_row,
    label_row,
    read_columns,
    select_sql,
    split_items,
    to_row,
)
from router.storage.writer import BatchedOutcomeLog, Item

TABLE = "cascadeflow_outcomes"
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
DATA_ERRORS: tuple[type[Exception], ...] = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
COLUMN_NAMES = ("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 "
                "AND NOT attisdropped")
Select = Callable[[Collection[str]], tuple[str, Sequence[object]]]
"""A query (SQL and parameters) made from the names of the table's columns."""


def _column_type(name: str) -> str:
    if name in BOOLEAN_COLUMNS:
        return "BOOLEAN NOT NULL" if name == "cache_hit" else "BOOLEAN"
    if name in INTEGER_COLUMNS:
        return "BIGINT"
    if name in REAL_COLUMNS:
        return "DOUBLE PRECISION NOT NULL" if name == "created_at" else "DOUBLE PRECISION"
    if name in BYTES_COLUMNS:
        return "BYTEA"
    if name in JSON_COLUMNS:  # sent and read back as JSON text (asyncpg's default codec), like SQLite's TEXT
        return "JSONB NOT NULL" if name == "components" else "JSONB"
    return "TEXT NOT NULL" if name in ("request_id", "tenant", "endpoint", "requested_model", "route") else "TEXT"


SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGSERIAL PRIMARY KEY, "
    + ", ".join(f"{name} {_column_type(name)}" for name in STORED_COLUMNS) + ")",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_request_id ON {TABLE} (request_id)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_created_at ON {TABLE} (created_at)",
    # tables made before records had ids, or verifier feature rows
    *(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {name} {_column_type(name)}" for name in ADDED_COLUMNS),
    f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_record_id ON {TABLE} (record_id)",
)
INSERT = (f"INSERT INTO {TABLE} ({', '.join(STORED_COLUMNS)}) "
          f"VALUES ({', '.join(f'${i + 1}' for i in range(len(STORED_COLUMNS)))}) ON CONFLICT (record_id) DO NOTHING")
LABEL = (f"UPDATE {TABLE} SET {', '.join(f'{c} = ${i + 1}' for i, c in enumerate(LABEL_COLUMNS))} "
         f"WHERE request_id = ${len(LABEL_COLUMNS) + 1}")


class PostgresOutcomeLog(BatchedOutcomeLog):
    """Outcome records in a PostgreSQL table, shared by every replica pointed at it."""

    backend = "postgresql"

    def __init__(self, settings: OutcomeLogSettings) -> None:
        super().__init__(settings)
        self.url = settings.url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: Any = None

    def _run_on_writer(self, work: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(work)

    def _open(self) -> None:
        async def connect() -> Any:
            connection = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S,
                                              command_timeout=COMMAND_TIMEOUT_S)
            try:
                for statement in SCHEMA:
                    await connection.execute(statement)
            except BaseException:
                connection.terminate()
                raise
            return connection

        self._connection = self._run_on_writer(connect())

    def _write(self, items: list[Item]) -> None:
        connection = self._connection
        if connection is None:
            raise ConnectionError("the outcome log is not connected")

        async def write() -> None:
            async with connection.transaction():
                for run in split_items(items):
                    if isinstance(run[0], OutcomeRecord):
                        await connection.executemany(INSERT, [to_row(r) for r in run if isinstance(r, OutcomeRecord)])
                    else:
                        await connection.executemany(LABEL, [label_row(u) for u in run if isinstance(u, LabelUpdate)])

        self._run_on_writer(write())

    def _is_data_error(self, exc: Exception) -> bool:
        return super()._is_data_error(exc) or isinstance(exc, DATA_ERRORS)

    def _prune(self, older_than: float | None, max_rows: int | None) -> None:
        connection = self._connection
        if connection is None:
            return

        async def prune() -> None:
            if older_than is not None:
                await connection.execute(f"DELETE FROM {TABLE} WHERE created_at < $1", older_than)
            if max_rows is not None:
                await connection.execute(f"DELETE FROM {TABLE} WHERE id <= (SELECT id FROM {TABLE} "
                                         "ORDER BY id DESC OFFSET $1 LIMIT 1)", max_rows)

        self._run_on_writer(prune())

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                self._run_on_writer(connection.close(timeout=CONNECT_TIMEOUT_S))
            except Exception:  # a broken connection: drop it without the goodbye
                connection.terminate()

    def _finish(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    async def _fetch(self, select: Select) -> list[Any]:
        """The rows of a query made from the table's column names (none without a table)."""
        connection = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        try:
            if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE):
                return []
            sql, parameters = select({row["attname"] for row in await connection.fetch(COLUMN_NAMES, TABLE)})
            return list(await connection.fetch(sql, *parameters))
        finally:
            await connection.close()

    async def query(self, *, labelled_only: bool = False, since: float | None = None,
                    limit: int | None = None) -> list[OutcomeRecord]:
        """Records, oldest first."""
        def select(present: Collection[str]) -> tuple[str, Sequence[object]]:
            return select_sql(TABLE, lambda n: f"${n}", columns=read_columns(present), labelled_only=labelled_only,
                              since=since, limit=limit)

        return [from_row(dict(row)) for row in await self._fetch(select)]

    async def count(self) -> int:
        """How many records the table holds."""
        rows = await self._fetch(lambda _: (f"SELECT COUNT(*) AS n FROM {TABLE}", ()))
        return int(rows[0]["n"]) if rows else 0
