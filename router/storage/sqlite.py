"""The embedded outcome log: one SQLite file in WAL mode, written by the writer thread, read by any thread."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from router.learning_settings import OutcomeLogSettings
from router.storage.records import (
    ADDED_COLUMNS,
    LABEL_COLUMNS,
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

_TYPES = {"created_at": "REAL NOT NULL", "embedding": "BLOB", "cache_hit": "INTEGER NOT NULL"}
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outcomes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{name} {_TYPES.get(name, '')}".strip() for name in STORED_COLUMNS) + ")",
    "CREATE INDEX IF NOT EXISTS outcomes_request_id ON outcomes (request_id)",
    "CREATE INDEX IF NOT EXISTS outcomes_created_at ON outcomes (created_at)",
)
RECORD_ID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS outcomes_record_id ON outcomes (record_id)"
INSERT = (f"INSERT INTO outcomes ({', '.join(STORED_COLUMNS)}) VALUES ({', '.join('?' for _ in STORED_COLUMNS)}) "
          "ON CONFLICT (record_id) DO NOTHING")
LABEL = f"UPDATE outcomes SET {', '.join(f'{c} = ?' for c in LABEL_COLUMNS)} WHERE request_id = ?"
Select = Callable[[Collection[str]], tuple[str, Sequence[object]]]
"""A query (SQL and parameters) made from the names of the table's columns."""


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/path` or `sqlite:////absolute/path` as a path."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return Path(url[len("sqlite:///"):])


class SQLiteOutcomeLog(BatchedOutcomeLog):
    """Outcome records in a local SQLite file (WAL, synchronous=FULL: a committed batch survives a crash)."""

    backend = "sqlite"

    def __init__(self, settings: OutcomeLogSettings) -> None:
        super().__init__(settings)
        self.path = sqlite_path(settings.url)
        self._connection: sqlite3.Connection | None = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:  # on failure the writer closes the connection
            connection.execute(statement)
        columns = _columns(connection)
        for name in ADDED_COLUMNS:  # a table made before records had ids, or verifier feature rows
            if name not in columns:
                connection.execute(f"ALTER TABLE outcomes ADD COLUMN {name} TEXT")
        connection.execute(RECORD_ID_INDEX)

    def _write(self, items: list[Item]) -> None:
        connection = self._connection
        if connection is None:
            raise sqlite3.OperationalError("the outcome log is not open")
        connection.execute("BEGIN IMMEDIATE")
        try:
            for run in split_items(items):
                if isinstance(run[0], OutcomeRecord):
                    connection.executemany(INSERT, [to_row(r) for r in run if isinstance(r, OutcomeRecord)])
                else:
                    connection.executemany(LABEL, [label_row(u) for u in run if isinstance(u, LabelUpdate)])
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _is_data_error(self, exc: Exception) -> bool:
        return super()._is_data_error(exc) or isinstance(exc, sqlite3.DataError | sqlite3.IntegrityError)

    def _prune(self, older_than: float | None, max_rows: int | None) -> None:
        connection = self._connection
        if connection is None:
            return
        if older_than is not None:
            connection.execute("DELETE FROM outcomes WHERE created_at < ?", (older_than,))
        if max_rows is not None:
            connection.execute("DELETE FROM outcomes WHERE id <= "
                               "(SELECT id FROM outcomes ORDER BY id DESC LIMIT 1 OFFSET ?)", (max_rows,))

    def _close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    def _read(self, select: Select) -> list[sqlite3.Row]:
        """The rows of a query made from the table's column names (none without a table)."""
        if not self.path.exists():
            return []
        connection = sqlite3.connect(self.path, timeout=30.0)
        try:
            connection.row_factory = sqlite3.Row
            if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outcomes'"
                                  ).fetchone() is None:
                return []  # a file the writer has not set up (yet)
            return list(connection.execute(*select(_columns(connection))))
        finally:
            connection.close()

    async def query(self, *, labelled_only: bool = False, since: float | None = None,
                    limit: int | None = None) -> list[OutcomeRecord]:
        """Records, oldest first (read on a worker thread with its own connection)."""
        def select(present: Collection[str]) -> tuple[str, Sequence[object]]:
            return select_sql("outcomes", lambda _: "?", columns=read_columns(present), labelled_only=labelled_only,
                              since=since, limit=limit)

        rows = await asyncio.to_thread(self._read, select)
        return [from_row(dict(row)) for row in rows]

    async def count(self) -> int:
        """How many records the file holds."""
        rows = await asyncio.to_thread(self._read, lambda _: ("SELECT COUNT(*) AS n FROM outcomes", ()))
        return int(rows[0]["n"]) if rows else 0


def _columns(connection: sqlite3.Connection) -> set[str]:
    """The names of the outcomes table's columns."""
    return {row[1] for row in connection.execute("PRAGMA table_info(outcomes)")}
