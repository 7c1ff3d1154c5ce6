"""Snapshot of the embedded cache on disk, so a restart keeps it (written at shutdown, read at start-up)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson

from router.cache.semantic import CacheEntry

VECTORS = "vectors.npy"
ENTRIES = "entries.jsonl"


def save_snapshot(directory: Path, entries: list[CacheEntry]) -> None:
    """Write the live entries atomically (blocking: run in a thread)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    live = [entry for entry in entries if entry.expires_at > now]
    vectors = np.stack([entry.vector for entry in live]) if live else np.zeros((0, 384), dtype=np.float32)
    lines = b"".join(orjson.dumps({"id": e.entry_id, "scope": e.scope, "key": e.exact_key,
                                   "payload": e.payload.decode("utf-8"), "created": e.created_at,
                                   "expires": e.expires_at, "meta": e.meta}) + b"\n" for e in live)
    _replace(directory / VECTORS, lambda handle: np.save(handle, vectors))
    _replace(directory / ENTRIES, lambda handle: handle.write(lines))


def _replace(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file under a temporary name, sync it, then rename it over the old one."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_snapshot(directory: Path) -> list[CacheEntry]:
    """The unexpired entries of a snapshot; none when there is none or it is unreadable."""
    try:
        vectors = np.load(directory / VECTORS)
        lines = (directory / ENTRIES).read_bytes().splitlines()
    except (OSError, ValueError):
        return []
    if len(lines) != len(vectors):
        return []
    now = time.time()
    entries = []
    for line, vector in zip(lines, vectors, strict=True):
        item = orjson.loads(line)
        if item["expires"] > now:
            entries.append(CacheEntry(int(item["id"]), item["scope"], item["key"], vector.astype(np.float32),
                                      item["payload"].encode("utf-8"), item["created"], item["expires"],
                                      item["meta"]))
    return entries
