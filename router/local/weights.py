"""Joining chunk files into one GGUF file and verifying it: nothing lands under its final name unverified."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BUFFER_BYTES = 8 * 1024 * 1024
MARKER_SUFFIX = ".sha256"


class ChecksumMismatch(Exception):
    """The assembled bytes are not the pinned file: they were deleted, and nothing was installed."""


@dataclass(frozen=True)
class Assembled:
    """A verified model file, and whether it was already there (nothing rewritten)."""

    path: Path
    sha256: str
    size: int
    reused: bool


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in large blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BUFFER_BYTES):
            digest.update(block)
    return digest.hexdigest()


def marker_path(path: Path) -> Path:
    """The `sha256sum`-style file written beside a model file once it is verified."""
    return path.with_name(path.name + MARKER_SUFFIX)


def marked_verified(path: Path, sha256: str, size: int) -> bool:
    """Cheap check (no hashing): the file has the pinned size and a verification marker newer than itself."""
    marker = marker_path(path)
    try:
        stat, marker_stat = path.stat(), marker.stat()
        recorded = marker.read_text().split()
    except OSError:
        return False
    return (bool(recorded) and recorded[0] == sha256 and (size == 0 or stat.st_size == size)
            and marker_stat.st_mtime_ns >= stat.st_mtime_ns)


def verify_file(path: Path, sha256: str, size: int) -> bool:
    """Full check: the file exists, has the pinned size and hashes to the pinned digest."""
    if not path.is_file() or (size and path.stat().st_size != size):
        return False
    return sha256_of(path) == sha256


def mark_verified(path: Path, sha256: str) -> None:
    """Record that a file was verified (a marker beside it, in `sha256sum -c` format)."""
    marker_path(path).write_text(f"{sha256}  {path.name}\n")


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    marker_path(path).unlink(missing_ok=True)


def assemble(chunks: Sequence[Path], target: Path, *, sha256: str, size: int = 0) -> Assembled:
    """Concatenate `chunks` in order into `target`, keeping it only when its SHA-256 (and size) match.

    The bytes go to a temporary file beside the target, renamed into place after the digest matched; a
    mismatch deletes it and raises ChecksumMismatch. A target that is already verified is kept as it is;
    one that is not is deleted first (a mismatch must not leave an older unverified file behind).
    """
    if not chunks:
        raise ValueError("no chunks to assemble")
    if target.exists():
        if verify_file(target, sha256, size):
            if not marked_verified(target, sha256, size):
                mark_verified(target, sha256)
            return Assembled(target, sha256, target.stat().st_size, reused=True)
        _remove(target)
    total = sum(chunk.stat().st_size for chunk in chunks)
    if size and total != size:
        raise ChecksumMismatch(f"{target.name}: the {len(chunks)} chunks hold {total} bytes, expected {size}; "
                               "refused (nothing written)")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial",
                                         delete=False)
    temporary = Path(handle.name)
    try:
        digest = hashlib.sha256()
        with handle:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(BUFFER_BYTES):
                        digest.update(block)
                        handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        actual = digest.hexdigest()
        if actual != sha256:
            raise ChecksumMismatch(f"{target.name}: assembled SHA-256 {actual} differs from the pinned {sha256}; "
                                   "the file was deleted and the model refused")
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    mark_verified(target, sha256)
    return Assembled(target, sha256, total, reused=False)
