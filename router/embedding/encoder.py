"""The sentence encoder: all-MiniLM-L6-v2 as an int8 ONNX graph run by onnxruntime, with micro-batching.

Requests that arrive together are embedded in one call on a worker thread (router/batching.py), so the event
loop never blocks and throughput grows with load; a lone request is embedded at once. The graph (mean pooling
and normalisation inside) and its tokenizer ship under `models/encoder-minilm-l6-int8/`; `cascadeflow train
--encoder` rebuilds them (PyTorch is needed there only).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from router.assets import shipped_models_dir
from router.batching import MicroBatcher

MODEL_NAME = "all-MiniLM-L6-v2/onnx-int8"
"""The name router artifacts record (`embedding_model`): vectors of another encoder are refused."""
ENCODER_DIRNAME = "encoder-minilm-l6-int8"
DIMENSION = 384
MAX_TOKENS = 256  # the model's own limit (sentence-transformers' max_seq_length)
PADDING_SLACK = 1.5
"""A batch is split where padding would make a row more than this many times its own length."""
RUN_TOKENS = 512
"""A model run takes fewer (padded) tokens than this, one row at least: past about this many, a run's working set
leaves the CPU caches and each row costs more than alone (a row of 256 tokens: 19.5 ms alone, 23.8 ms in a run
of 32; rows of 9 tokens still gain up to 32 a run)."""

Vector = NDArray[np.float32]


class Encoder:
    """Normalised 384-d float32 embeddings; `load()` at start-up (blocking), `embed()` on the request path."""

    def __init__(self, *, max_batch: int = 32, window_ms: float = 0.0, max_chars: int = 2000,
                 threads: int = 1, directory: Path | None = None) -> None:
        self.max_batch = max_batch
        self.window_s = window_ms / 1000.0
        self.max_chars = max_chars
        self.threads = threads
        self.directory = directory or shipped_models_dir() / ENCODER_DIRNAME
        self.batches_run = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._batcher: MicroBatcher[str, Vector] = MicroBatcher(self._rows, self.executor,
                                                               max_batch=max_batch, window_s=self.window_s)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._session is not None

    @property
    def dimension(self) -> int:
        """The embedding dimension."""
        return DIMENSION

    def load(self) -> None:
        """Load the graph and tokenizer from the artifact directory (blocking: call at start-up, off the loop)."""
        if self._session is not None:
            return
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        tokenizer = Tokenizer.from_file(str(self.directory / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer = tokenizer
        self._session = onnxruntime.InferenceSession(str(self.directory / "model.onnx"), options,
                                                     providers=["CPUExecutionProvider"])

    def encode_batch(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts now (blocking): one L2-normalised row per text."""
        if self._session is None:
            raise RuntimeError("the encoder is not loaded")
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            self.batches_run += 1
            encodings = self._tokenizer.encode_batch([text[: self.max_chars] for text in texts])
            lengths = [len(encoding.ids) for encoding in encodings]
            order = sorted(range(len(texts)), key=lambda row: lengths[row])
            for group in _runs(order, lengths):
                width = len(encodings[group[-1]].ids)
                ids = np.zeros((len(group), width), dtype=np.int64)
                mask = np.zeros((len(group), width), dtype=np.int64)
                for slot, row in enumerate(group):
                    tokens = encodings[row].ids
                    ids[slot, : len(tokens)] = tokens
                    mask[slot, : len(tokens)] = 1
                out[group] = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def _rows(self, texts: list[str]) -> list[Vector]:
        return list(self.encode_batch(texts))

    async def start(self) -> None:
        """Nothing to start: batchers are created per event loop on first use."""

    async def stop(self) -> None:
        """Forget this loop's batcher."""
        self._batcher.forget_loop()

    async def embed(self, text: str) -> Vector:
        """One text's vector, batched with the other calls of the same moment."""
        return await self._batcher.submit(text)


def _runs(order: list[int], lengths: list[int]) -> list[list[int]]:
    """Rows sorted by token count, cut into model runs (one row at least): a new run starts where padding to the
    new row's length would make the run's first row more than PADDING_SLACK times its own length, or where the run
    would reach RUN_TOKENS padded tokens (rows come shortest first, so the new row sets the run's width)."""
    runs: list[list[int]] = []
    for row in order:
        width = max(1, lengths[row])
        if runs and width <= PADDING_SLACK * max(1, lengths[runs[-1][0]]) and (len(runs[-1]) + 1) * width < RUN_TOKENS:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs
