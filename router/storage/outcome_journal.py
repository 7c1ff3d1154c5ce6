"""The outcome log's write-ahead journal (router/storage/journal.py): records and label updates as journal lines,
and the segments processes that are gone left behind, read back into items."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from router.learning_settings import OutcomeLogSettings
from router.storage.journal import Journal
from router.storage.records import OutcomeRecord, from_spool, journal_line
from router.storage.spool import Item

logger = logging.getLogger("router.storage")
Queued = tuple[Item, int]
"""An item and the number of its journal segment (-1: not in the journal)."""


def journal_directory(settings: OutcomeLogSettings) -> Path | None:
    """Where the log's journal lives: `journal_path`, else next to a SQLite file (`<file>.journal.d`), else next to
    the spool (`outcomes.journal.d`); None when the journal is off or has no place (settings not from
    `load_settings`, which gives it one under the data directory)."""
    if not settings.journal:
        return None
    if settings.journal_path:
        return Path(settings.journal_path)
    if settings.url.startswith("sqlite:///") and not settings.url.endswith(":memory:"):
        return Path(settings.url[len("sqlite:///"):] + ".journal.d")
    return Path(settings.spool_path).parent / "outcomes.journal.d" if settings.spool_path else None


class OutcomeJournal:
    """Appends items (a failure degrades to memory only, logged once per outage) and replays orphaned segments."""

    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        self.journal = Journal(directory, fsync=fsync)
        self.errors = 0
        self._failing = False

    @property
    def appended(self) -> int:
        """Items appended so far."""
        return self.journal.appended

    def append(self, item: Item) -> int:
        """Journal an item; its segment's number, or -1 when it could not be (then it lives in memory only)."""
        try:
            segment = self.journal.append(journal_line(item))
        except (OSError, TypeError, ValueError) as exc:  # degraded (no longer crash-safe), never failing a request
            self.errors += 1
            if not self._failing:
                logger.error("outcome journal %s unwritable (%s): records are kept in memory only",
                             self.journal.directory, exc)
            self._failing = True
            return -1
        self._failing = False
        return segment

    def done(self, queued: Iterable[Queued]) -> None:
        """These items are committed or spooled."""
        self.journal.done(segment for _, segment in queued if segment >= 0)

    def recover(self, persist: Callable[[list[Item]], bool]) -> int:
        """Hand each orphaned segment's items to `persist` (True: durable now, the segment is deleted; False: kept
        for the next start); returns how many records were handed over."""
        recovered = 0
        try:
            for orphan in self.journal.orphans():
                items = []
                for line in orphan.lines:
                    try:
                        items.append(from_spool(line))
                    except (ValueError, KeyError, TypeError):  # a line torn by a machine crash
                        logger.warning("skipping an unreadable outcome journal line in %s", orphan.path)
                if persist(items):
                    orphan.forget()
                    recovered += sum(isinstance(item, OutcomeRecord) for item in items)
                else:
                    orphan.release()
        except Exception:  # a journal that cannot be read must not keep the log from starting
            logger.exception("replaying the outcome journal failed; kept for the next start")
        if recovered:
            logger.info("wrote %d outcome records left in the journal by a process that stopped", recovered)
        return recovered

    def open(self) -> None:
        """Accept appends (again)."""
        self.journal.open()

    def close(self) -> None:
        """Delete what is done, keep the rest for the next start."""
        self.journal.close()

    async def synced(self) -> None:
        """Return once everything appended is on disk (at once without fsync)."""
        await self.journal.synced()
