"""The outcome log's write path, shared by both backends: a bounded queue drained in batches by one thread.

`submit` never blocks and never raises: a full queue drops the record and counts it. The writer thread
commits each batch in one transaction; `flush()` returns once everything submitted before it is committed
(or, while the store is failing, appended to the spool file and fsynced): that is what an acknowledged
record means. The spool is replayed, in order, as soon as the store accepts writes again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from router.settings import OutcomeLogSettings
from router.storage.records import LabelUpdate, OutcomeRecord, from_spool, to_spool

logger = logging.getLogger("router.storage")
Item = OutcomeRecord | LabelUpdate
RETENTION_EVERY_S = 60.0
RETRY_EVERY_S = 1.0


@dataclass(frozen=True)
class _Marker:
    """A flush (or stop) request: resolved by the writer once everything before it is durable."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    stop: bool = False
    prune: bool = False

    def done(self) -> None:
        self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class BatchedOutcomeLog(ABC):
    """A queue, a writer thread and a spool; subclasses write batches to their store."""

    backend = "abstract"

    def __init__(self, settings: OutcomeLogSettings) -> None:
        self.settings = settings
        self._queue: queue.Queue[Item | _Marker] = queue.Queue(maxsize=settings.queue_size)
        self._thread: threading.Thread | None = None
        self._spool = Path(settings.spool_path) if settings.spool_path else None
        self._healthy = False
        self._counts = {"written": 0, "dropped": 0, "spooled": 0, "errors": 0}
        self._last_error: str | None = None
        self._last_retention = 0.0
        self._last_retry = 0.0

    # --- what a backend provides (called on the writer thread, except the async queries) -------------------

    @abstractmethod
    def _open(self) -> None:
        """Connect and create the schema (raises when the store is unreachable)."""

    @abstractmethod
    def _write(self, items: list[Item]) -> None:
        """Write records and label updates, in order, in one transaction."""

    @abstractmethod
    def _prune(self, older_than: float | None, max_rows: int | None) -> None:
        """Delete records older than a time and beyond a row count (oldest first)."""

    @abstractmethod
    def _close(self) -> None:
        """Close the writer's connection."""

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
        ready = asyncio.get_running_loop().create_future()
        marker = _Marker(asyncio.get_running_loop(), ready)
        self._thread = threading.Thread(target=self._run, args=(marker,), name=f"outcome-log-{self.backend}",
                                        daemon=True)
        self._thread.start()
        await ready

    def submit(self, record: OutcomeRecord) -> bool:
        """Queue a record; False (counted as dropped) when the queue is full."""
        return self._put(record)

    def submit_label(self, request_id: str, label: bool, source: str, detail: str = "") -> bool:
        """Queue a label for an earlier record; it lands after that record."""
        return self._put(LabelUpdate(request_id, label, source, detail))

    def _put(self, item: Item) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._counts["dropped"] += 1
            return False
        return True

    async def flush(self) -> None:
        """Return once everything submitted before the call is committed (or spooled)."""
        await self._marker(stop=False)

    async def stop(self) -> None:
        """Write what is queued, then stop the writer."""
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
        await marker.future

    def status(self) -> dict[str, object]:
        """For /ready and the metrics."""
        return {"healthy": self._healthy, "backend": self.backend, "queued": self._queue.qsize(),
                **self._counts, "last_error": self._last_error}

    # --- the writer thread --------------------------------------------------------------------------------

    def _run(self, started: _Marker) -> None:
        self._connect()
        started.done()
        while True:
            try:
                first = self._queue.get(timeout=self.settings.flush_interval_ms / 1000.0)
            except queue.Empty:
                self._housekeeping()
                continue
            batch = [first]
            while len(batch) < self.settings.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = [item for item in batch if not isinstance(item, _Marker)]
            markers = [item for item in batch if isinstance(item, _Marker)]
            if items:
                self._persist(items)
            if self._healthy and any(marker.prune for marker in markers):
                self._prune_now()
            for marker in markers:
                marker.done()
            if any(marker.stop for marker in markers):
                break
            self._housekeeping()
        self._close_quietly()
        self._finish()

    def _finish(self) -> None:  # noqa: B027 - optional hook
        """Release what the writer thread owned (after its last close)."""

    def _connect(self) -> None:
        try:
            self._open()
            self._healthy = True
            self._replay_spool()
        except Exception as exc:  # a store that is down at start degrades the log, never the proxy
            self._failed("opening the outcome log", exc)

    def _persist(self, items: list[Item]) -> None:
        if self._healthy:
            try:
                self._write(items)
                self._counts["written"] += sum(isinstance(item, OutcomeRecord) for item in items)
                return
            except Exception as exc:  # any store error: keep the records in the spool
                self._failed("writing outcome records", exc)
        self._to_spool(items)

    def _failed(self, what: str, exc: Exception) -> None:
        self._healthy = False
        self._counts["errors"] += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        logger.error("%s failed (%s); records go to the spool until the store is back", what, self._last_error)
        self._close_quietly()

    def _to_spool(self, items: list[Item]) -> None:
        records = sum(isinstance(item, OutcomeRecord) for item in items)
        if self._spool is None:
            self._counts["dropped"] += records
            logger.error("outcome log down and no spool configured: %d records lost", records)
            return
        try:
            self._spool.parent.mkdir(parents=True, exist_ok=True)
            with self._spool.open("a", encoding="utf-8") as handle:
                handle.write("".join(to_spool(item) + "\n" for item in items))
                handle.flush()
                os.fsync(handle.fileno())
            self._counts["spooled"] += records
        except OSError as exc:
            self._counts["dropped"] += records
            logger.error("outcome spool %s unwritable (%s): %d records lost", self._spool, exc, records)

    def _replay_spool(self) -> None:
        if self._spool is None or not self._spool.exists():
            return
        lines = [line for line in self._spool.read_text(encoding="utf-8").splitlines() if line.strip()]
        items: list[Item] = []
        for line in lines:
            try:
                items.append(from_spool(line))
            except (ValueError, KeyError, TypeError):  # a torn last line from a crash mid-append
                logger.warning("skipping an unreadable spool line")
        if items:
            self._write(items)
            self._counts["written"] += sum(isinstance(item, OutcomeRecord) for item in items)
            logger.info("replayed %d spooled outcome items", len(items))
        self._spool.unlink()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if not self._healthy and now - self._last_retry >= RETRY_EVERY_S:
            self._last_retry = now
            self._connect()
        if self._healthy and now - self._last_retention >= RETENTION_EVERY_S:
            self._last_retention = now
            self._prune_now()

    def _prune_now(self) -> None:
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
