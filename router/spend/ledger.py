"""The spend ledger: every finished request's cost row, journaled and queued without blocking, written in batches.

`post` never blocks and never raises. It appends the row to the write-ahead journal (router/storage/journal.py: one
`write()`, so a killed process loses no row of an answered request) and queues it; a full queue leaves the row in
the journal alone (written at the next start); without a journal it is dropped and counted. The writer task takes up
to `batch_size` rows, or what arrived within `flush_interval_ms`, and inserts them in one transaction off the event
loop (SQLite on a worker thread, PostgreSQL through asyncpg), then lets the journal forget them. When the database
refuses, the batch is appended to the spool file (fsynced) and replayed, in order, once the database answers again.
`start` first writes the rows that processes that are gone left in the journal (rows are keyed by request id: one
written twice is kept once), so the budgets read them. `stop` writes (or spools) everything queued before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from router.budgets.core import Periods, SpentTotal
from router.metrics import Metrics
from router.spend.records import SpendRecord, UsageQuery, UsageRow, spend_record
from router.spend.settings import SpendSettings
from router.spend.stores import SpendStore, open_spend_store
from router.storage.journal import Journal
from router.storage.spool import Spool

if TYPE_CHECKING:
    from router.pipeline.outcome import Outcome

logger = logging.getLogger("router.spend")
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
READ_WAIT_S = 5.0
Marker = asyncio.Future[None]
"""A flush request: resolved once every row queued before it is written (or spooled)."""
Queued = tuple[SpendRecord, int]
"""A row and the number of its journal segment (-1: not in the journal)."""
Item = Queued | Marker


def build_spend_ledger(settings: SpendSettings, metrics: Metrics) -> SpendLedger | None:
    """The ledger the settings name; None when it is off or has no database (settings not from `load_settings`)."""
    if not settings.enabled or settings.url is None:
        return None
    return SpendLedger(open_spend_store(settings.url), settings, metrics)


def journal_directory(settings: SpendSettings) -> Path | None:
    """Where the ledger's journal lives: `journal_path`, else next to a SQLite file (`<file>.journal.d`), else next
    to the spool (`spend.journal.d`); None when the journal is off or has no place (settings not from
    `load_settings`, which gives it one under the data directory)."""
    if not settings.journal or settings.url is None:
        return None
    if settings.journal_path:
        return Path(settings.journal_path)
    if settings.url.startswith("sqlite:///"):
        return Path(settings.url[len("sqlite:///"):] + ".journal.d")
    return Path(settings.spool_path).parent / "spend.journal.d" if settings.spool_path else None


class SpendLedger:
    """A queue of spend rows, the task that writes them, and the reads of `/v1/usage` and the budgets."""

    def __init__(self, store: SpendStore, settings: SpendSettings, metrics: Metrics) -> None:
        self.store = store
        self._settings = settings
        self._metrics = metrics
        self._queue: asyncio.Queue[Item] | None = None
        self._wake = asyncio.Event()  # a full batch or a flush marker is queued: the writer stops gathering
        self._task: asyncio.Task[None] | None = None
        self._spool = Spool(Path(settings.spool_path)) if settings.spool_path else None
        directory = journal_directory(settings)
        self._journal = Journal(directory, fsync=settings.journal_fsync) if directory is not None else None
        self._journal_failing = False
        self._retry_at = 0.0
        self._retry_delay = RETRY_MIN_S
        self.healthy = True
        self.last_error: str | None = None
        self._counts = {"written": 0, "dropped": 0, "spooled": 0, "deferred": 0, "recovered": 0,
                        "journal_errors": 0}

    async def start(self) -> None:
        """Write what the journal holds of processes that are gone, then start the writer."""
        if self._task is None:
            if self._journal is not None:
                self._journal.open()
                await self._recover(self._journal)
            self._queue, self._wake = asyncio.Queue(maxsize=self._settings.queue_size), asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="spend-ledger")

    def post(self, outcome: Outcome) -> None:
        """Queue a finished request's row; never blocks, never raises."""
        try:
            record = spend_record(outcome)
        except Exception:  # the books must never fail a request, nor the records that follow this one
            logger.exception("the spend row of %s could not be built", outcome.call.request_id)
            self._drop(1)
            return
        self.post_record(record)

    def post_record(self, record: SpendRecord) -> None:
        """Journal and queue a row (a full queue leaves it in the journal alone; dropped and counted when it is in
        neither, or the ledger is not running)."""
        if self._queue is None:
            self._drop(1)
            return
        segment = self._journaled(record)
        try:
            self._queue.put_nowait((record, segment))
            if self._queue.qsize() >= self._settings.batch_size:
                self._wake.set()
        except asyncio.QueueFull:
            if segment >= 0:
                self._counts["deferred"] += 1
            else:
                self._drop(1)

    def _journaled(self, record: SpendRecord) -> int:
        """Append the row to the journal; its segment's number, or -1 (no journal, or it failed: logged once)."""
        if self._journal is None:
            return -1
        try:
            segment = self._journal.append(orjson.dumps(record))
        except (OSError, TypeError, ValueError) as exc:  # degraded (no longer crash-safe), never failing a request
            self._counts["journal_errors"] += 1
            if not self._journal_failing:
                logger.error("spend journal %s unwritable (%s): rows are kept in memory only",
                             self._journal.directory, exc)
            self._journal_failing = True
            return -1
        self._journal_failing = False
        return segment

    @property
    def syncs(self) -> bool:
        """Whether the journal fsyncs (answers then wait for it)."""
        return self._journal is not None and self._journal.fsync

    async def durable(self) -> None:
        """Return once every row posted survives a machine crash (with `journal_fsync`; at once otherwise)."""
        if self._journal is not None:
            await self._journal.synced()

    def _drop(self, count: int) -> None:
        self._counts["dropped"] += count
        self._metrics.inc("cascadeflow_spend_records_total", float(count), result="dropped")

    async def flush(self) -> None:
        """Return once every row posted before the call is written (or spooled)."""
        if self._queue is None or self._task is None or self._task.done():
            return
        marker: Marker = asyncio.get_running_loop().create_future()
        await self._queue.put(marker)
        self._wake.set()
        await marker

    async def stop(self) -> None:
        """Write what is queued, stop the writer and close the database."""
        await self.flush()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._queue = None
        if self._journal is not None:
            self._journal.close()
        await self.store.close()

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """The sums a query asks for, this process's queued rows included."""
        try:
            await asyncio.wait_for(self.flush(), READ_WAIT_S)
        except TimeoutError:
            logger.warning("usage read before the spend queue was written")
        return await self.store.usage(query)

    async def history(self, periods: Periods) -> list[SpentTotal]:
        """The persisted spend per budget scope (key, user, tier) in the current day and month."""
        totals: dict[tuple[str, str], float] = {}
        for day, key_id, user, tier, usd in await self.store.scope_totals(f"{periods.month}-01"):
            names = [f"key:{key_id}"] + ([f"user:{user}"] if user else []) + ([f"tier:{tier}"] if tier else [])
            for period in [periods.key("monthly")] + ([periods.key("daily")] if day == periods.day else []):
                for name in names:
                    totals[(name, period)] = totals.get((name, period), 0.0) + usd
        return [SpentTotal(scope, period, usd) for (scope, period), usd in totals.items()]

    def status(self) -> dict[str, object]:
        """For /ready."""
        return {"healthy": self.healthy, "queued": self._queue.qsize() if self._queue is not None else 0,
                **self._counts, "journaled": self._journal.appended if self._journal is not None else 0,
                "last_error": self.last_error}

    # --- the writer task -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), self._retry_delay if not self.healthy else None)
            except TimeoutError:
                await self._replay()  # idle while the database is down: try the spool again
                continue
            batch, markers = await self._gather(queue, first)
            try:
                if batch and await self._persist([record for record, _ in batch]) and self._journal is not None:
                    self._journal.done(segment for _, segment in batch if segment >= 0)
            except Exception:  # a bug must not kill the writer (flush() would wait forever)
                logger.exception("the spend ledger writer failed on a batch")
            finally:
                for marker in markers:
                    if not marker.done():
                        marker.set_result(None)

    async def _gather(self, queue: asyncio.Queue[Item], first: Item) -> tuple[list[Queued], list[Marker]]:
        """Rows until `batch_size`, a flush marker, or `flush_interval_ms` after the first. The writer sleeps
        through the interval (woken early by a full batch or a marker) and then takes what is queued: one wait
        per batch, not one per row."""
        batch: list[Queued] = []
        deadline = time.monotonic() + self._settings.flush_interval_ms / 1000.0
        item: Item | None = first
        while True:
            while item is not None:
                if not isinstance(item, tuple):
                    return batch, [item]
                batch.append(item)
                if len(batch) >= self._settings.batch_size:
                    return batch, []
                item = _queued(queue)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch, []
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
            item = _queued(queue)

    async def _persist(self, batch: list[SpendRecord]) -> bool:
        """Write the rows, else spool them; whether they are durable now (else they stay in the journal)."""
        if self._spool is not None and self._spool.path.exists():
            await self._replay()  # rows spooled earlier go first
        if self.healthy or time.monotonic() >= self._retry_at:
            try:
                await self.store.write(batch)
                self._written(len(batch))
                return True
            except Exception as exc:  # any database failure: the rows go to the spool
                self._failed(exc)
        return await self._to_spool(batch)

    async def _recover(self, journal: Journal) -> None:
        """Write (else spool) the rows that processes that are gone left in the journal; keep what neither took."""
        recovered = 0
        try:
            for orphan in await asyncio.to_thread(list, journal.orphans()):
                rows = []
                for line in orphan.lines:
                    try:
                        rows.append(SpendRecord.of_json(orjson.loads(line)))
                    except (ValueError, KeyError, TypeError):  # a line torn by a machine crash
                        logger.warning("skipping an unreadable spend journal line in %s", orphan.path)
                batches = [rows[start:start + self._settings.batch_size]
                           for start in range(0, len(rows), self._settings.batch_size)]
                if all([await self._persist(batch) for batch in batches]):
                    orphan.forget()
                    recovered += len(rows)
                else:
                    orphan.release()
        except Exception:  # a journal that cannot be read must not keep the proxy from starting
            logger.exception("replaying the spend journal failed; kept for the next start")
        if recovered:
            self._counts["recovered"] += recovered
            logger.info("wrote %d spend rows left in the journal by a process that stopped", recovered)

    def _written(self, count: int) -> None:
        self._counts["written"] += count
        self._metrics.inc("cascadeflow_spend_records_total", float(count), result="written")
        if not self.healthy:
            logger.info("spend ledger database writable again")
        self.healthy, self._retry_delay = True, RETRY_MIN_S

    def _failed(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.healthy:
            logger.error("spend ledger write failed (%s); rows go to the spool until it answers", self.last_error)
        self.healthy = False
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2.0, RETRY_MAX_S)

    async def _to_spool(self, batch: Sequence[SpendRecord]) -> bool:
        """Spool rows; False when they could not be (lost, or left in the journal for the next start)."""
        problem = "no spool configured" if self._spool is None else ""
        if self._spool is not None:
            try:
                await asyncio.to_thread(self._spool.append, [orjson.dumps(row).decode() for row in batch])
                self._counts["spooled"] += len(batch)
                self._metrics.inc("cascadeflow_spend_records_total", float(len(batch)), result="spooled")
                return True
            except OSError as exc:
                problem = f"spool {self._spool.path} unwritable ({exc})"
        if self._journal is not None:
            self._counts["deferred"] += len(batch)
            logger.error("spend ledger down, %s: %d rows left in the journal for the next start", problem, len(batch))
        else:
            self._drop(len(batch))
            logger.error("spend ledger down, %s: %d rows lost", problem, len(batch))
        return False

    async def _replay(self) -> None:
        """Write the spooled rows, if the database answers (the file is taken by renaming it, so one process of
        several sharing it replays each row)."""
        spool = self._spool
        if spool is None or not spool.path.exists() or (not self.healthy and time.monotonic() < self._retry_at):
            return
        taken = spool.path.with_name(f"{spool.path.name}.{os.getpid()}.replay")
        try:
            os.replace(spool.path, taken)
            lines = (await asyncio.to_thread(taken.read_text, encoding="utf-8")).splitlines()
        except OSError:
            return
        rows = []
        for line in lines:
            try:
                rows.append(SpendRecord.of_json(orjson.loads(line)))
            except (ValueError, KeyError, TypeError):
                logger.warning("skipping an unreadable spend spool line")
        try:
            for start in range(0, len(rows), self._settings.batch_size):
                await self.store.write(rows[start:start + self._settings.batch_size])
            self._written(len(rows))
        except Exception as exc:  # still down: the rows go back to the spool, to be replayed later
            self._failed(exc)
            await asyncio.to_thread(spool.append, lines)
        await asyncio.to_thread(taken.unlink, missing_ok=True)


def _queued(queue: asyncio.Queue[Item]) -> Item | None:
    """The next queued item, or None when the queue is empty."""
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        return None
