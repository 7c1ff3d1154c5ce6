"""The spool: a JSON-lines file that holds outcome items while the store refuses them, replayed when it is back.

Every append and every replay holds an exclusive `flock` on the file, and checks that the path still names the
file it locked, so processes sharing one spool (several workers) never lose each other's lines: an append lands
either before a replay reads the file (and is replayed with it) or in a new file after the replay removed it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from router.storage.records import LabelUpdate, OutcomeRecord, from_spool, to_spool

logger = logging.getLogger("router.storage")
Item = OutcomeRecord | LabelUpdate


class Spool:
    """Append-only, fsynced JSON lines of records and label updates, in submission order."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _open_locked(self, flags: int) -> int | None:
        """A descriptor of the file the path names, exclusively locked (None when there is no file)."""
        while True:
            try:
                fd = os.open(self.path, flags, 0o600)
            except FileNotFoundError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    return fd
            except FileNotFoundError:  # replayed and removed while we waited for the lock: open the new one
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def append(self, lines: Sequence[str]) -> None:
        """Append lines (without newlines) and fsync; raises OSError when the file cannot be written."""
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked(os.O_RDWR | os.O_APPEND | os.O_CREAT)
        if fd is None:  # pragma: no cover - O_CREAT makes the file
            raise FileNotFoundError(self.path)
        try:
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a crash mid-append left half a line
            _write_all(fd, (("\n" if torn else "") + "".join(line + "\n" for line in lines)).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_items(self, items: Sequence[Item]) -> tuple[int, list[Item]]:
        """Append items; returns how many records were written and the items that could not be serialised."""
        lines, unserialisable = [], []
        for item in items:
            try:
                lines.append(to_spool(item))
            except (TypeError, ValueError, OverflowError) as exc:
                logger.error("outcome item %s cannot be serialised (%s)", item.request_id, type(exc).__name__)
                unserialisable.append(item)
        self.append(lines)
        bad = {id(item) for item in unserialisable}
        written = sum(isinstance(item, OutcomeRecord) and id(item) not in bad for item in items)
        return written, unserialisable

    def replay(self, write: Callable[[list[Item]], list[Item]]) -> int:
        """Hand the spooled items, in order, to `write`, which returns those it could not store (kept here).

        Returns how many items were handed over. Unreadable lines (a torn last line) are skipped.
        """
        fd = self._open_locked(os.O_RDWR)
        if fd is None:
            return 0
        try:
            data = _read_all(fd)
            items: list[Item] = []
            for line in data.decode("utf-8", "replace").splitlines():
                if not line.strip():
                    continue
                try:
                    items.append(from_spool(line))
                except (ValueError, KeyError, TypeError):
                    logger.warning("skipping an unreadable outcome spool line")
            left = write(items) if items else []
            if left:  # keep what the store did not take, in order, for the next replay (swapped in atomically)
                partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
                partial_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    _write_all(partial_fd, "".join(to_spool(item) + "\n" for item in left).encode("utf-8"))
                    os.fsync(partial_fd)
                finally:
                    os.close(partial_fd)
                os.replace(partial, self.path)
            else:
                os.unlink(self.path)
            return len(items)
        finally:
            os.close(fd)

    def append_rejected(self, item: Item, error: Exception) -> None:
        """Keep an item the store refuses as data (a poison record) next to the spool, never replayed."""
        try:
            body: object = json.loads(to_spool(item))
        except (TypeError, ValueError, OverflowError):
            body = None
        line = json.dumps({"request_id": str(item.request_id), "error": f"{type(error).__name__}: {error}",
                           "item": body})
        Spool(self.path.with_name(self.path.name + ".rejected")).append([line])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)
