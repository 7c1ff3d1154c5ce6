"""The outcome log's write path, shared by both backends: a journal, a bounded queue drained in batches by one thread.

`submit` never blocks and never raises. It appends the record to the write-ahead journal (router/storage/journal.py:
one `write()`, so a killed process loses nothing submitted) and queues it; the writer thread commits each batch in
one transaction, then lets the journal forget it. At start-up the journal segments of processes that are gone are
written first (records carry unique ids, so one committed before the crash is kept once). A full queue leaves the
record in the journal alone (counted as deferred: written at the next start); without a journal it is dropped.
`flush()` returns once everything submitted before it is committed (or, while the store is failing, appended to the
spool file and fsynced). The spool is replayed, in order, as soon as the store accepts writes again (retried with
exponential backoff). A record the store refuses as data (not as an outage) is written to a `.rejected` file
next to the spool instead of wedging the log.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from router.learning_settings import OutcomeLogSettings
from router.storage.outcome_journal import OutcomeJournal, Queued, journal_directory
from router.storage.records import LabelUpdate, OutcomeRecord, new_record_id
from router.storage.spool import Item, Spool

logger = logging.getLogger("router.storage")
RETENTION_EVERY_S = 60.0
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
DATA_ERRORS: tuple[type[Exception], ...] = (TypeError, ValueError, OverflowError)

__all__ = ["BatchedOutcomeLog", "Item"]


def _records(items: Sequence[Item]) -> int:
    return sum(isinstance(item, OutcomeRecord) for item in items)


@dataclass(frozen=True)
class _Marker:
    """A flush (or stop) request: resolved by the writer once everything before it is durable."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    stop: bool = False
    prune: bool = False

    def done(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the waiting loop is closed: nobody is waiting any more
            pass

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class BatchedOutcomeLog(ABC):
    """A queue, a writer thread and a spool; subclasses write batches to their store."""

    backend = "abstract"

    def __init__(self, settings: OutcomeLogSettings) -> None:
        self.settings = settings
        self._queue: queue.Queue[Queued | _Marker] = queue.Queue(maxsize=settings.queue_size)
        self._thread: threading.Thread | None = None
        self._spool = Spool(Path(settings.spool_path)) if settings.spool_path else None
        directory = journal_directory(settings)
        self._journal = OutcomeJournal(directory, fsync=settings.journal_fsync) if directory is not None else None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._healthy = False
        self._stopped = False
        self._counts = {"written": 0, "dropped": 0, "spooled": 0, "rejected": 0, "errors": 0, "deferred": 0,
                                "recovered": 0}
        self._last_error: str | None = None
        self._next_retention = 0.0
        self._next_retry = 0.0
        self._retry_delay = RETRY_MIN_S

    # --- what a backend provides (called on the writer thread, except the async queries) -------------------

    @abstractmethod
    def _open(self) -> None:
        """Connect and create the schema (raises when the store is unreachable)."""

    @abstractmethod
    def _write(self, items: list[Item]) -> None:
        """Write records and label updates, in order, in one transaction (all or nothing)."""

    @abstractmethod
    def _prune(self, older_than: float | None, max_rows: int | None) -> None:
        """Delete records older than a time and beyond a row count (oldest first)."""

    @abstractmethod
    def _close(self) -> None:
        """Close the writer's connection."""

    def _is_data_error(self, exc: Exception) -> bool:
        """Whether the store refused the items themselves (as opposed to being unavailable)."""
        return isinstance(exc, DATA_ERRORS)

    @abstractmethod
    async def query(self, *, labelled_only: bool = False, since: float | None = None,
                    limit: int | None = None) -> list[OutcomeRecord]:
        """Records, oldest first."""

    @abstractmethod
    async def count(self) -> int:
        """How many records the store holds."""

    # --- the public write path ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer thread; a store that is down degrades the log (see status) instead of failing."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopped = False
        if self._journal is not None:
            self._journal.open()
        loop = asyncio.get_running_loop()
        ready = _Marker(loop, loop.create_future())
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"outcome-log-{self.backend}",
                                        daemon=True)
        self._thread.start()
        await ready.future

    def submit(self, record: OutcomeRecord) -> bool:
        """Journal and queue a record; False (counted as dropped) when it could be neither (or the log stopped)."""
        if record.record_id is None:
            record = replace(record, record_id=new_record_id())
        return self._put(record)

    def submit_label(self, request_id: str, label: bool, source: str, detail: str = "") -> bool:
        """Queue a label for an earlier record; it lands after that record."""
        return self._put(LabelUpdate(request_id, label, source, detail))

    def _put(self, item: Item) -> bool:
        if not self._stopped:
            segment = self._journal.append(item) if self._journal is not None else -1
            try:
                self._queue.put_nowait((item, segment))
                if self._queue.qsize() >= self.settings.batch_size:
                    self._wake.set()  # a full batch is waiting: write it now
                return True
            except queue.Full:
                if segment >= 0:
                    self._add("deferred", 1)  # in the journal alone: written at the next start
                    return True
        self._add("dropped", 1)
        return False

    async def durable(self) -> None:
        """Return once what was submitted so far would survive a machine crash (with `journal_fsync`; else at once)."""
        if self._journal is not None:
            await self._journal.synced()

    async def flush(self) -> None:
        """Return once everything submitted before the call is committed (or spooled); no-op when not started."""
        await self._marker(stop=False)

    async def stop(self) -> None:
        """Write what is queued, then stop the writer; later submissions are dropped."""
        self._stopped = True
        if self._thread is None or not self._thread.is_alive():
            return
        await self._marker(stop=True)
        await asyncio.to_thread(self._thread.join)

    async def prune(self) -> None:
        """Apply the retention settings now (the writer also does so at start and every minute)."""
        await self._marker(stop=False, prune=True)

    async def _marker(self, *, stop: bool, prune: bool = False) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        loop = asyncio.get_running_loop()
        marker = _Marker(loop, loop.create_future(), stop, prune)
        try:
            self._queue.put_nowait(marker)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, marker)
        self._wake.set()
        await marker.future

    def status(self) -> dict[str, object]:
        """For /ready and the metrics."""
        with self._lock:
            counts = dict(self._counts)
        journal = self._journal
        return {"healthy": self._healthy, "backend": self.backend, "queued": self._queue.qsize(), **counts,
                "journaled": journal.appended if journal is not None else 0,
                "journal_errors": journal.errors if journal is not None else 0, "last_error": self._last_error}

    def _add(self, name: str, amount: int) -> None:
        if amount:
            with self._lock:
                self._counts[name] += amount

    # --- the writer thread --------------------------------------------------------------------------------

    def _run(self, started: _Marker) -> None:
        self._connect()
        if self._journal is not None:
            self._add("recovered", self._journal.recover(self._persist))
        started.done()
        if self._healthy:
            self._prune_now()  # retention once at start, then at most once a minute
        while True:
            try:
                first = self._queue.get(timeout=self.settings.flush_interval_ms / 1000.0)
            except queue.Empty:
                self._housekeeping()
                continue
            batch = self._gather(first)
            markers = [item for item in batch if isinstance(item, _Marker)]
            try:
                queued = [item for item in batch if not isinstance(item, _Marker)]
                if queued and self._persist([item for item, _ in queued]) and self._journal is not None:
                    self._journal.done(queued)
                if self._healthy and any(marker.prune for marker in markers):
                    self._prune_now()
                self._housekeeping()
            except Exception:  # a bug must not kill the writer (flush() would wait forever)
                self._add("errors", 1)
                logger.exception("the outcome log writer failed on a batch")
            finally:
                for marker in markers:
                    marker.done()
            if any(marker.stop for marker in markers):
                break
        self._close_quietly()
        if self._journal is not None:
            self._journal.close()
        self._finish()

    def _gather(self, first: Queued | _Marker) -> list[Queued | _Marker]:
        """A batch: items until `batch_size`, a flush or stop marker, or `flush_interval_ms` after the first.

        Between drains the thread sleeps on an event that only markers and a full batch set, not on the queue
        (which would wake it for every record): under load that is a few wake-ups, commits and fsyncs a
        second, so the writer barely competes with the event loop for the GIL.
        """
        batch = [first]
        deadline = time.monotonic() + self.settings.flush_interval_ms / 1000.0
        while not isinstance(batch[-1], _Marker):
            while len(batch) < self.settings.batch_size and not isinstance(batch[-1], _Marker):
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            remaining = deadline - time.monotonic()
            if len(batch) >= self.settings.batch_size or isinstance(batch[-1], _Marker) or remaining <= 0:
                break
            self._wake.wait(remaining)
            self._wake.clear()
        return batch

    def _finish(self) -> None:  # noqa: B027 - optional hook
        """Release what the writer thread owned (after its last close)."""

    def _connect(self) -> None:
        try:
            self._open()
        except Exception as exc:  # a store that is down degrades the log, never the proxy
            self._failed("opening the outcome log", exc)
            return
        self._healthy = True
        self._replay_spool()
        if self._healthy:
            self._retry_delay = RETRY_MIN_S

    def _persist(self, items: list[Item]) -> bool:
        """Store the items, or spool what the store did not take; whether all of them are now durable."""
        left = self._store(items) if self._healthy else items
        return not left or self._to_spool(left)

    def _store(self, items: list[Item]) -> list[Item]:
        """Write items; returns those left unwritten because the store failed (refused ones are set aside)."""
        try:
            self._write(items)
            self._add("written", _records(items))
            return []
        except Exception as exc:
            if not self._is_data_error(exc):
                self._failed("writing outcome records", exc)
                return items
        for index, item in enumerate(items):  # something in the batch is refused: find it, keep the rest
            try:
                self._write([item])
                self._add("written", _records([item]))
            except Exception as exc:
                if not self._is_data_error(exc):
                    self._failed("writing outcome records", exc)
                    return items[index:]
                self._reject(item, exc)
        return []

    def _reject(self, item: Item, exc: Exception) -> None:
        self._add("errors", 1)
        self._add("rejected", 1)
        self._last_error = f"{type(exc).__name__} (item {item.request_id} set aside)"
        logger.error("the outcome store refused item %s (%s); set aside", item.request_id, type(exc).__name__)
        if self._spool is None:
            self._add("dropped", _records([item]))
            return
        try:
            self._spool.append_rejected(item, exc)
        except OSError as error:
            self._add("dropped", _records([item]))
            logger.error("outcome rejected-items file unwritable (%s): item %s lost", error, item.request_id)

    def _failed(self, what: str, exc: Exception) -> None:
        self._healthy = False
        self._add("errors", 1)
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._next_retry = time.monotonic() + self._retry_delay
        logger.error("%s failed (%s); records go to the spool, retry in %.1fs", what, self._last_error,
                     self._retry_delay)
        self._retry_delay = min(self._retry_delay * 2.0, RETRY_MAX_S)
        self._close_quietly()

    def _to_spool(self, items: list[Item]) -> bool:
        """Spool items; False when they could not be (lost, or left in the journal for the next start)."""
        records = _records(items)
        kept = "left in the journal for the next start" if self._journal is not None else "lost"
        if self._spool is None:
            self._add("deferred" if self._journal is not None else "dropped", records)
            logger.error("outcome log down and no spool configured: %d records %s", records, kept)
            return False
        try:
            spooled, unserialisable = self._spool.write_items(items)
        except OSError as exc:
            self._add("deferred" if self._journal is not None else "dropped", records)
            logger.error("outcome spool %s unwritable (%s): %d records %s", self._spool.path, exc, records, kept)
            return False
        self._add("spooled", spooled)
        self._add("dropped", _records(unserialisable))
        return True

    def _replay_spool(self) -> None:
        if self._spool is None:
            return
        try:
            replayed = self._spool.replay(self._store)
        except OSError as exc:
            logger.error("outcome spool %s unreadable (%s); kept for the next replay", self._spool.path, exc)
            return
        if replayed:
            logger.info("replayed %d spooled outcome items", replayed)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if not self._healthy and now >= self._next_retry:
            self._connect()
        if self._healthy and now >= self._next_retention:
            self._prune_now()

    def _prune_now(self) -> None:
        self._next_retention = time.monotonic() + RETENTION_EVERY_S
        days = self.settings.retention_days
        try:
            self._prune(time.time() - days * 86400.0 if days is not None else None, self.settings.max_rows)
        except Exception as exc:  # retention failing is not worth degrading for; it runs again later
            logger.warning("outcome log retention failed: %s", exc)

    def _close_quietly(self) -> None:
        try:
            self._close()
        except Exception:  # closing a broken connection may fail too; nothing to do
            logger.debug("closing the outcome log connection failed", exc_info=True)
