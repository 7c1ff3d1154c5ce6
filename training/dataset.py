"""Labelled routing data for training and evaluation: rows, per-request quality, hash split, cached embeddings.

Sources: a RouteLLM-style JSONL (`data/routellm/dev.jsonl`) or the proxy's outcome log (`router.storage`).
Quality of a request, on [0, 1]: 0/1 correctness for MMLU and GSM8K, the GPT-4 grade / 10 for MT-bench. A
log row has only a label: its draft quality is that label and its strong quality is taken as 1.

Split: by hash of the prompt id, with both turns of an MT-bench conversation kept together
(`mtbench/81/turn2` hashes as `mtbench/81`): bucket = sha256(group) mod 10; buckets 0-1 are the test split
(20%), bucket 2 the validation split (10%), buckets 3-9 the training split (70%).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from router.embedding.text import embedding_text
from router.policy.classifier import file_sha256
from router.policy.features import feature_vector, request_from_prompt
from router.types import JSONObject

if TYPE_CHECKING:
    from router.storage.records import OutcomeRecord

Split = Literal["train", "validation", "test"]
SPLIT_RULE = ("bucket = int(sha256(id without a trailing '/turnN'), 16) % 10; "
              "0-1 -> test (20%), 2 -> validation (10%), 3-9 -> train (70%)")
TEST_BUCKETS = frozenset({0, 1})
VALIDATION_BUCKETS = frozenset({2})
EMBED_BATCH = 64
_TURN = re.compile(r"/turn\d+$")


class BatchEncoder(Protocol):
    """What training needs of `router.embedding.encoder.Encoder`."""

    def load(self) -> None: ...

    def encode_batch(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


@dataclass
class Labelled:
    """Rows of labelled data, column-wise: one entry per request."""

    ids: list[str]
    sources: list[str]
    categories: list[str]
    requests: list[JSONObject]
    labels: NDArray[np.int64]
    draft_quality: NDArray[np.float64]
    strong_quality: NDArray[np.float64]
    draft_output_chars: NDArray[np.float64]
    strong_output_chars: NDArray[np.float64]
    embeddings: list[NDArray[np.float32] | None] = field(default_factory=list)
    structural: list[NDArray[np.float32] | None] = field(default_factory=list)
    draft_texts: list[str | None] = field(default_factory=list)
    created_at: NDArray[np.float64] | None = None
    origin: list[JSONObject] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask: NDArray[np.bool_]) -> Labelled:
        """The rows where `mask` is true."""
        index = np.flatnonzero(mask)
        pick = [int(i) for i in index]
        return Labelled(
            ids=[self.ids[i] for i in pick], sources=[self.sources[i] for i in pick],
            categories=[self.categories[i] for i in pick], requests=[self.requests[i] for i in pick],
            labels=self.labels[index], draft_quality=self.draft_quality[index],
            strong_quality=self.strong_quality[index], draft_output_chars=self.draft_output_chars[index],
            strong_output_chars=self.strong_output_chars[index],
            embeddings=[self.embeddings[i] for i in pick] if self.embeddings else [],
            structural=[self.structural[i] for i in pick] if self.structural else [],
            draft_texts=[self.draft_texts[i] for i in pick] if self.draft_texts else [],
            created_at=self.created_at[index] if self.created_at is not None else None, origin=self.origin,
        )

    def features(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        """The classifier's input: embeddings row-aligned with the rows, then the structural features (the
        logged ones where a row has them, else computed from its request exactly as serving does)."""
        rows = [feature_vector(embeddings[i], self.requests[i]) if not self.structural or self.structural[i] is None
                else np.concatenate([embeddings[i], self.structural[i]]).astype(np.float32)
                for i in range(len(self))]
        return np.vstack(rows) if rows else np.zeros((0, embeddings.shape[1] if embeddings.ndim == 2 else 0),
                                                      dtype=np.float32)

    def splits(self) -> NDArray[np.str_]:
        """The split of every row."""
        return np.array([split_of(i) for i in self.ids])


def group_of(example_id: str) -> str:
    """The prompt group an id belongs to: the turns of one conversation are one group."""
    return _TURN.sub("", example_id)


def split_of(example_id: str) -> Split:
    """The split a prompt id belongs to (see the module docstring)."""
    bucket = int(hashlib.sha256(group_of(example_id).encode()).hexdigest(), 16) % 10
    return "test" if bucket in TEST_BUCKETS else "validation" if bucket in VALIDATION_BUCKETS else "train"


def short_source(source: str) -> str:
    """`routellm/mmlu` -> `mmlu`."""
    return source.rsplit("/", 1)[-1]


def row_quality(row: JSONObject, key: str) -> float:
    """A row's `draft_score` or `strong_score` on [0, 1] (a GPT-4 grade of 1-10 divided by 10)."""
    value = float(row[key])
    return value / 10.0 if row.get("label_kind") == "gpt4_score_1_10" else value


def load_jsonl(path: Path, *, limit: int | None = None) -> Labelled:
    """Labelled rows of a RouteLLM-style JSONL file (`prompt` or `turns`, scores, `draft_good_enough`)."""
    rows: list[JSONObject] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    prompts = [row["turns"] if row.get("turns") else row["prompt"] for row in rows]
    return Labelled(
        ids=[str(row["id"]) for row in rows], sources=[short_source(str(row["source"])) for row in rows],
        categories=[str(row.get("category") or "") for row in rows],
        requests=[request_from_prompt(prompt) for prompt in prompts],
        labels=np.array([int(row["draft_good_enough"]) for row in rows], dtype=np.int64),
        draft_quality=np.array([row_quality(row, "draft_score") for row in rows]),
        strong_quality=np.array([row_quality(row, "strong_score") for row in rows]),
        draft_output_chars=np.array([float(len(row.get("draft_response") or "")) for row in rows]),
        strong_output_chars=np.array([float(len(row.get("strong_response") or "")) for row in rows]),
        draft_texts=[row.get("draft_response") for row in rows],
        origin=[{"path": str(path), "sha256": file_sha256(path), "rows": len(rows)}],
    )


def load_outcome_log(url: str, *, since: float | None = None) -> Labelled:
    """Labelled rows of the proxy's outcome log (SQLite or PostgreSQL URL), with the features logged at serving.

    A row's id is its prompt hash, so a hash split keeps repeats of a prompt together; its draft quality is
    its label and its strong quality 1. Rows logged without an embedding or features are left out.
    """
    from router.storage import open_outcome_log

    async def fetch() -> list[OutcomeRecord]:
        return await open_outcome_log(url).query(labelled_only=True, since=since)

    outcomes = [o for o in asyncio.run(fetch()) if o.embedding and o.features is not None and o.label is not None]
    labels = np.array([int(bool(o.label)) for o in outcomes], dtype=np.int64)
    return Labelled(
        ids=[o.prompt_sha256 or o.request_id for o in outcomes], sources=["log"] * len(outcomes),
        categories=[o.requested_model for o in outcomes],
        requests=[request_from_prompt(o.prompt_text or "") for o in outcomes], labels=labels,
        draft_quality=labels.astype(np.float64), strong_quality=np.ones(len(outcomes)),
        draft_output_chars=np.array([4.0 * (o.draft_output_tokens or 0) for o in outcomes], dtype=np.float64),
        strong_output_chars=np.array([4.0 * (o.output_tokens or 0) for o in outcomes], dtype=np.float64),
        embeddings=[np.frombuffer(o.embedding or b"", dtype=np.float32).copy() for o in outcomes],
        structural=[np.asarray(o.features, dtype=np.float32) for o in outcomes],
        draft_texts=[o.draft_text for o in outcomes],
        created_at=np.array([o.created_at for o in outcomes], dtype=np.float64),
        origin=[{"path": url.split("?")[0].split("@")[-1], "sha256": None, "rows": len(outcomes),
                 "label_sources": sorted({str(o.label_source) for o in outcomes})}],
    )


def concat(parts: Sequence[Labelled]) -> Labelled:
    """Rows of several data sets, in order."""
    has_embeddings = any(part.embeddings for part in parts)
    has_structural = any(part.structural for part in parts)
    return Labelled(
        ids=[i for p in parts for i in p.ids], sources=[s for p in parts for s in p.sources],
        categories=[c for p in parts for c in p.categories], requests=[r for p in parts for r in p.requests],
        labels=np.concatenate([p.labels for p in parts]),
        draft_quality=np.concatenate([p.draft_quality for p in parts]),
        strong_quality=np.concatenate([p.strong_quality for p in parts]),
        draft_output_chars=np.concatenate([p.draft_output_chars for p in parts]),
        strong_output_chars=np.concatenate([p.strong_output_chars for p in parts]),
        embeddings=[e for p in parts for e in (p.embeddings or [None] * len(p))] if has_embeddings else [],
        structural=[e for p in parts for e in (p.structural or [None] * len(p))] if has_structural else [],
        draft_texts=[t for p in parts for t in (p.draft_texts or [None] * len(p))],
        origin=[o for p in parts for o in p.origin],
    )


def embed(texts: Sequence[str], encoder_factory: Callable[[], BatchEncoder], *, model_name: str,
          cache_dir: Path | None, progress: bool = True) -> NDArray[np.float32]:
    """Embeddings of texts, from `cache_dir/embeddings-<sha>.npy` when the same texts and model were seen."""
    key = hashlib.sha256("\x00".join([model_name, *texts]).encode()).hexdigest()[:20]
    path = cache_dir / f"embeddings-{key}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            return np.asarray(cached, dtype=np.float32)
    encoder = encoder_factory()
    encoder.load()
    batches = [list(texts[i:i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
    rows = [encoder.encode_batch(batch) for batch in tqdm(batches, desc="embedding", unit="batch",
                                                            disable=not progress)]
    vectors = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def embed_requests(data: Labelled, encoder_factory: Callable[[], BatchEncoder], *, model_name: str,
                   cache_dir: Path | None, progress: bool = True) -> NDArray[np.float32]:
    """One embedding per row: the log's own where it has one, else the encoder's (of `embedding_text`)."""
    missing = [i for i in range(len(data)) if not data.embeddings or data.embeddings[i] is None]
    fresh = embed([embedding_text(data.requests[i]) for i in missing], encoder_factory, model_name=model_name,
                  cache_dir=cache_dir, progress=progress) if missing else None
    rows: list[NDArray[np.float32]] = [np.zeros(0, dtype=np.float32)] * len(data)
    for position, i in enumerate(missing):
        assert fresh is not None
        rows[i] = fresh[position]
    for i in range(len(data)):
        if data.embeddings and data.embeddings[i] is not None:
            rows[i] = np.asarray(data.embeddings[i], dtype=np.float32)
    return np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)
