"""Joining fake chunk files: order respected, a hash mismatch refused and deleted, a verified file reused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from router.local.weights import (
    ChecksumMismatch,
    assemble,
    mark_verified,
    marked_verified,
    marker_path,
    sha256_of,
    verify_file,
)

CHUNKS = (b"GGUF-first-", b"second-", b"third-and-last")
WHOLE = b"".join(CHUNKS)
DIGEST = hashlib.sha256(WHOLE).hexdigest()


def chunk_files(directory: Path, contents: tuple[bytes, ...] = CHUNKS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, content in enumerate(contents, start=1):
        path = directory / f"part{number:02d}.bin"
        path.write_bytes(content)
        paths.append(path)
    return paths


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".partial"))


def test_chunks_are_joined_in_the_order_given_and_marked_verified(tmp_path: Path) -> None:
    target = tmp_path / "models" / "model.gguf"
    result = assemble(chunk_files(tmp_path / "chunks"), target, sha256=DIGEST, size=len(WHOLE))
    assert target.read_bytes() == WHOLE
    assert (result.path, result.sha256, result.size, result.reused) == (target, DIGEST, len(WHOLE), False)
    assert marker_path(target).read_text() == f"{DIGEST}  model.gguf\n"
    assert marked_verified(target, DIGEST, len(WHOLE)) and verify_file(target, DIGEST, len(WHOLE))
    assert sha256_of(target) == DIGEST
    assert leftovers(target.parent) == []


def test_a_hash_mismatch_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    target = tmp_path / "models" / "model.gguf"
    swapped = list(reversed(chunk_files(tmp_path / "chunks")))  # the right bytes in the wrong order
    with pytest.raises(ChecksumMismatch, match="differs from the pinned"):
        assemble(swapped, target, sha256=DIGEST)
    assert not target.exists() and not marker_path(target).exists()
    assert leftovers(target.parent) == []


def test_a_size_mismatch_is_refused_before_writing(tmp_path: Path) -> None:
    target = tmp_path / "models" / "model.gguf"
    with pytest.raises(ChecksumMismatch, match="hold 32 bytes, expected 33"):
        assemble(chunk_files(tmp_path / "chunks"), target, sha256=DIGEST, size=len(WHOLE) + 1)
    assert not target.exists()


def test_assembling_again_reuses_the_verified_file(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    chunks = chunk_files(tmp_path / "chunks")
    assemble(chunks, target, sha256=DIGEST, size=len(WHOLE))
    before = target.stat().st_mtime_ns
    for chunk in chunks:
        chunk.unlink()  # not even read: the verified file is kept as it is
    again = assemble(chunks, target, sha256=DIGEST, size=len(WHOLE))
    assert again.reused and target.stat().st_mtime_ns == before and target.read_bytes() == WHOLE


def test_a_corrupt_existing_file_is_rebuilt(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    target.write_bytes(b"x" * len(WHOLE))
    mark_verified(target, DIGEST)  # a stale marker does not make it verified
    result = assemble(chunk_files(tmp_path / "chunks"), target, sha256=DIGEST, size=len(WHOLE))
    assert not result.reused and target.read_bytes() == WHOLE


def test_a_corrupt_existing_file_is_deleted_even_when_the_rebuild_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    target.write_bytes(b"tampered")
    bad = chunk_files(tmp_path / "chunks", (b"GGUF-first-", b"evil-", b"third-and-last"))
    with pytest.raises(ChecksumMismatch):
        assemble(bad, target, sha256=DIGEST)
    assert not target.exists()


def test_the_marker_no_longer_vouches_for_a_file_changed_after_it(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    assemble(chunk_files(tmp_path / "chunks"), target, sha256=DIGEST, size=len(WHOLE))
    assert not marked_verified(target, "f" * 64, len(WHOLE))  # another pinned digest
    stat = marker_path(target).stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten after it was verified
    assert not marked_verified(target, DIGEST, len(WHOLE))
    assert verify_file(target, DIGEST, len(WHOLE))  # the full check still passes: the bytes are right
    assert not verify_file(tmp_path / "absent.gguf", DIGEST, 0)


def test_no_chunks_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        assemble([], tmp_path / "model.gguf", sha256=DIGEST)
