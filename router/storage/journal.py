"""The write-ahead journal: a record is appended to a local file before its request is acknowledged, forgotten once
the batched writer has committed it, and written again at the next start when the process died first.

Acknowledged means: the request's HTTP response is complete. The record step appends the request's records before
that moment: a JSON answer's (a replayed draft's, a cached answer's, an error's) before its first byte; a stream's
after its last event has been handed to the server and before the end of its body. Each record is one `write()` to
a file opened with O_APPEND: once it returns the line is in the kernel's page cache, so `kill -9` (any crash of the
process alone) cannot lose it. A machine crash can, unless `fsync` is on: then the answer also waits for a group
fsync (one `fdatasync` covers every record appended while the previous one ran).

Segments are `<pid>-<token>-<number>.jsonl` files in the journal's directory. The process that writes a segment
holds an exclusive `flock` on it until it deletes it, so a segment whose lock can be taken was left by a process
that is gone: those are what start-up replays (workers sharing a directory never replay each other's live ones).
A segment is deleted once every record in it is committed (or spooled) and a newer one is written; the current one
is truncated instead. Records carry unique ids that the stores keep once, so a record committed just before a crash
and replayed after it is stored once.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("router.storage")
SEGMENT_BYTES = 4 << 20
"""A segment is rotated past this size (so committed records can be deleted while others are still written)."""
SUFFIX = ".jsonl"
_Waiter = tuple[int, asyncio.AbstractEventLoop, "asyncio.Future[None]"]


@dataclass
class _Segment:
    number: int
    path: Path
    fd: int
    size: int = 0
    appended: int = 0
    done: int = 0


class Orphan:
    """A segment of a process that is gone, locked by this one until it is forgotten or released."""

    def __init__(self, path: Path, fd: int, lines: list[bytes]) -> None:
        self.path = path
        self.lines = lines
        self._fd = fd

    def forget(self) -> None:
        """Its records are stored (or spooled): delete it."""
        try:
            self.path.unlink(missing_ok=True)
        finally:
            self.release()

    def release(self) -> None:
        """Keep it (unlocked) for the next start."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class Journal:
    """One process's segments in a directory: `append` on the request path, `done` from the writer (thread-safe)."""

    def __init__(self, directory: Path, *, fsync: bool = False, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.fsync = fsync
        self._segment_bytes = segment_bytes
        self._prefix = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._number = 0
        self._closed = False
        self.appended = 0
        """Records appended since the journal was made (a counter for the status)."""
        self._synced = 0
        self._dirty: set[int] = set()
        self._new_file = False
        self._waiters: list[_Waiter] = []
        self._wake = threading.Event()
        self._syncer: threading.Thread | None = None

    def open(self) -> None:
        """Accept appends again after `close`."""
        with self._lock:
            self._closed = False

    def append(self, line: bytes) -> int:
        """Append one record (a line without its newline) in one `write()`; returns its segment's number.

        Raises OSError when the line could not be written whole (nothing is left half-written behind it)."""
        data = line + b"\n"
        finished: _Segment | None = None
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "the journal is closed")
            segment = self._current
            if segment is None or segment.size >= self._segment_bytes:
                segment, finished = self._rotate()
            try:
                written = os.write(segment.fd, data)
            except OSError:
                self._cut(segment)
                raise
            if written != len(data):  # a full disk: drop the torn line so the next one starts on its own
                self._cut(segment)
                raise OSError(errno.ENOSPC, "short write to the journal")
            segment.size += written
            segment.appended += 1
            self.appended += 1
            if self.fsync:
                self._dirty.add(segment.number)
        if finished is not None:
            _delete(finished)
        return segment.number

    def _cut(self, segment: _Segment) -> None:
        try:
            os.ftruncate(segment.fd, segment.size)
        except OSError:
            logger.warning("the journal segment %s could not be cut back after a failed write", segment.path)

    def _rotate(self) -> tuple[_Segment, _Segment | None]:
        """A new current segment, created under a temporary name and locked before it gets its real name; and the
        previous one, detached, when all its records are done (the caller deletes it, outside the lock)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._number += 1
        name = f"{self._prefix}-{self._number:08d}"
        temporary = self.directory / f".{name}.tmp"
        path = self.directory / f"{name}{SUFFIX}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temporary, path)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        previous = self._current
        self._current = segment = self._segments[self._number] = _Segment(self._number, path, fd)
        self._new_file = True
        if previous is not None and previous.done >= previous.appended:
            self._detach(previous)
            return segment, previous
        return segment, None

    def done(self, numbers: Iterable[int]) -> None:
        """Records of these segments (a number per record) are committed or spooled: delete what is all done."""
        finished = []
        with self._lock:
            for number, count in Counter(numbers).items():
                segment = self._segments.get(number)
                if segment is None:
                    continue
                segment.done += count
                if segment.done < segment.appended:
                    continue
                if segment is not self._current:
                    self._detach(segment)
                    finished.append(segment)
                elif segment.size:
                    try:
                        os.ftruncate(segment.fd, 0)
                        segment.size = segment.appended = segment.done = 0
                    except OSError as exc:  # kept: replayed (idempotently) at the next start
                        logger.warning("the journal segment %s could not be emptied: %s", segment.path, exc)
        for segment in finished:
            _delete(segment)

    def _detach(self, segment: _Segment) -> None:
        """Forget a segment (under the lock); `_delete` then removes its file."""
        del self._segments[segment.number]
        self._dirty.discard(segment.number)
        if segment is self._current:
            self._current = None

    def close(self) -> None:
        """Delete the segments whose records are all done; keep the others (unlocked) for the next start."""
        with self._lock:
            self._closed = True
            segments = list(self._segments.values())
            for segment in segments:
                self._detach(segment)
            self._dirty.clear()
        for segment in segments:
            if segment.done >= segment.appended:
                _delete(segment)
            else:
                os.close(segment.fd)
        self._wake.set()
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None

    # --- start-up: what processes that are gone left behind -------------------------------------------------

    def orphans(self) -> Iterator[Orphan]:
        """Segments of processes that are gone, in the order they were written, each locked while it is handled."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            path = self.directory / name
            if name.startswith(".") and name.endswith(".tmp"):
                _clear_temporary(path)
            elif name.endswith(SUFFIX):
                orphan = _claim(path)
                if orphan is not None:
                    yield orphan

    # --- group fsync ------------------------------------------------------------------------------------------

    async def synced(self) -> None:
        """Return once every record appended so far is on disk; at once when `fsync` is off."""
        if not self.fsync:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._synced >= self.appended or self._closed:
                return
            self._waiters.append((self.appended, loop, future))
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_forever, name="journal-fsync", daemon=True)
                self._syncer.start()
        self._wake.set()
        await future

    def _sync_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            fds: list[int] = []
            with self._lock:
                target, closed = self.appended, self._closed
                new_file, self._new_file = self._new_file, False
                try:
                    for number in self._dirty:
                        fds.append(os.dup(self._segments[number].fd))
                except OSError as exc:
                    logger.error("journal fsync failed: %s", exc)
                self._dirty.clear()
            try:
                for fd in fds:
                    os.fdatasync(fd)
                if new_file:
                    _sync_directory(self.directory)
            except OSError as exc:
                logger.error("journal fsync failed: %s", exc)
            finally:
                for fd in fds:
                    os.close(fd)
            with self._lock:
                self._synced = max(self._synced, target)
                ready = [w for w in self._waiters if w[0] <= self._synced or closed]
                self._waiters = [w for w in self._waiters if w[0] > self._synced and not closed]
            for _, loop, future in ready:
                _resolve_soon(loop, future)
            if closed:
                return


def _delete(segment: _Segment) -> None:
    """Delete a segment's file, then let go of its lock (never the other way round)."""
    try:
        segment.path.unlink(missing_ok=True)
    except OSError as exc:  # kept: replayed (idempotently) at the next start
        logger.warning("the journal segment %s could not be deleted: %s", segment.path, exc)
    finally:
        os.close(segment.fd)


def _resolve_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # the waiting loop is closed: nobody waits any more
        pass


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _claim(path: Path) -> Orphan | None:
    """The segment, locked and read, if no live process holds it (None otherwise)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not os.path.samestat(os.fstat(fd), os.stat(path)):
            raise FileNotFoundError(path)  # deleted and made again while we waited: not the file we hold
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return Orphan(path, fd, [line for line in b"".join(chunks).split(b"\n") if line.strip()])


def _clear_temporary(path: Path) -> None:
    """Remove a segment a process died creating (before it got its real name, so before any record)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
