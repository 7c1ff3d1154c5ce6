"""FAISS only: one inner-product index per scope; flat while small, HNSW past a measured size.

Measured here (benchmarks/cache_overhead.py, 384-d, 2 cores): a flat search costs about 1 ms at 10k entries,
15 ms at 100k and 150 ms at 1M, so a scope switches to HNSW (M=32) past HNSW_THRESHOLD entries. HNSW cannot
delete: removed ids become tombstones, filtered from results, and the index is rebuilt when they pile up.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np
from numpy.typing import NDArray

HNSW_THRESHOLD = 20_000
HNSW_M = 32


class ScopeIndex:
    """The vectors of one scope."""

    def __init__(self, dimension: int, hnsw_threshold: int) -> None:
        self._dimension = dimension
        self._hnsw_threshold = hnsw_threshold
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._hnsw = False
        self._tombstones: set[int] = set()

    @property
    def size(self) -> int:
        """Live vectors."""
        return int(self._index.ntotal) - len(self._tombstones)

    @property
    def kind(self) -> str:
        """flat or hnsw."""
        return "hnsw" if self._hnsw else "flat"

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Index vectors."""
        self._index.add_with_ids(vectors, ids)
        if not self._hnsw and self.size > self._hnsw_threshold:
            self._rebuild(hnsw=True)

    def remove(self, entry_id: int) -> None:
        """Forget a vector (a tombstone under HNSW)."""
        if not self._hnsw:
            self._index.remove_ids(np.array([entry_id], dtype=np.int64))  # type: ignore[arg-type]
            return
        self._tombstones.add(entry_id)
        if len(self._tombstones) > max(1000, self.size // 4):
            self._rebuild(hnsw=self.size > self._hnsw_threshold)

    def search(self, vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """The k nearest live (id, similarity)."""
        total = int(self._index.ntotal)
        if total == 0:
            return []
        similarities, ids = self._index.search(vector.reshape(1, -1), min(total, k + len(self._tombstones)))
        found = [(int(i), float(s)) for i, s in zip(ids[0], similarities[0], strict=True)
                 if i >= 0 and int(i) not in self._tombstones]
        return found[:k]

    def _rebuild(self, *, hnsw: bool) -> None:
        total = int(self._index.ntotal)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = self._index.index.reconstruct_n(0, total) if total else np.zeros((0, self._dimension), np.float32)
        keep = np.array([int(i) not in self._tombstones for i in ids], dtype=bool)
        inner = (faiss.IndexHNSWFlat(self._dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT) if hnsw
                 else faiss.IndexFlatIP(self._dimension))
        self._index = faiss.IndexIDMap2(inner)
        self._hnsw = hnsw
        self._tombstones = set()
        if keep.any():
            self._index.add_with_ids(np.ascontiguousarray(vectors[keep]), ids[keep])


class VectorIndex:
    """Per-scope indexes (scopes are mostly small: the conversation so far is part of them)."""

    def __init__(self, dimension: int, hnsw_threshold: int = HNSW_THRESHOLD) -> None:
        self._dimension = dimension
        self._hnsw_threshold = hnsw_threshold
        self._scopes: dict[str, ScopeIndex] = {}
        self._lock = threading.Lock()

    def _scope(self, scope: str) -> ScopeIndex:
        index = self._scopes.get(scope)
        if index is None:
            index = self._scopes[scope] = ScopeIndex(self._dimension, self._hnsw_threshold)
        return index

    def add(self, scope: str, entry_id: int, vector: NDArray[np.float32]) -> None:
        """Index one vector under a scope."""
        self.add_many(scope, np.array([entry_id], dtype=np.int64), vector.reshape(1, -1))

    def add_many(self, scope: str, entry_ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Index many vectors under a scope at once."""
        with self._lock:
            self._scope(scope).add(entry_ids, np.ascontiguousarray(vectors, dtype=np.float32))

    def remove(self, scope: str, entry_id: int) -> None:
        """Forget one vector."""
        with self._lock:
            index = self._scopes.get(scope)
            if index is not None:
                index.remove(entry_id)
                if index.size == 0:
                    del self._scopes[scope]

    def search(self, scope: str, vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """The k nearest (id, cosine similarity) within one scope."""
        with self._lock:
            index = self._scopes.get(scope)
            return index.search(vector, k) if index is not None else []

    def kind(self, scope: str) -> str | None:
        """flat, hnsw, or None for an empty scope."""
        index = self._scopes.get(scope)
        return index.kind if index is not None else None
