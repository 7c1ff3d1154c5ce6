"""The per-request figures the joint policy is chosen on: qualities, estimated costs and the router's prediction.

Rows are labelled data rows with a draft answer (RouteLLM GSM8K and MT-bench, local-model rows). Quality is on
[0, 1] (0/1 correctness, or the GPT-4 grade / 10). Costs are estimates: the rows have no token counts, so
tokens are characters / 4 (the user turns in, each answer out), priced as the RouteLLM pair
(Mixtral-8x7B-Instruct as the draft, GPT-4-1106-preview as the strong model) for every row; the ratio of the
two prices is what the choice depends on. An outcome-log row (training/verifier_log.py) carries the real costs
the proxy logged instead (`LOGGED_DRAFT_COST`, `LOGGED_STRONG_COST`); its profile, `log`, is chosen on those
alone. The router's prediction is the shipped (or given) router artifact's, on the same request form it was
trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router.costs import PriceBook, TokenUsage
from router.policy.features import feature_vector, request_from_prompt
from training.dataset import row_quality
from training.policy import Floats, PolicyData

DRAFT_PRICE_NAME = "mixtral-8x7b-instruct"
STRONG_PRICE_NAME = "gpt-4-1106-preview"
CHARS_PER_TOKEN = 4.0
LOGGED_DRAFT_COST = "draft_cost_usd"
LOGGED_STRONG_COST = "strong_cost_usd"
"""A row's real costs in USD (the draft's, and the strong model's alone), used instead of the estimates."""


def quality(row: dict[str, Any], key: str) -> float:
    """A row's quality on [0, 1]. A row with only a label (an outcome-log row) has its label as the draft's
    quality and 1 as the strong model's."""
    if key not in row:
        return float(row["draft_good_enough"]) if key == "draft_score" else 1.0
    return row_quality(row, key)


def _chars(value: object) -> float:
    if isinstance(value, list):
        return float(sum(len(str(v)) for v in value))
    return float(len(str(value or "")))


def prompt_of(row: dict[str, Any]) -> str | list[str]:
    """The row's prompt: its user turns (MT-bench) or its one prompt."""
    turns = row.get("turns")
    return [str(t) for t in turns] if isinstance(turns, list) and turns else str(row.get("prompt") or "")


def pair_prices(book: PriceBook | None = None) -> tuple[tuple[float, float], tuple[float, float]]:
    """USD per token, (input, output), of the draft and of the strong model the estimates are priced as."""
    book = book or PriceBook()

    def per_token(model: str, usage: TokenUsage) -> float:
        cost = book.cost(model, usage)
        if not cost.known:
            raise ValueError(f"no price for {model}")
        return cost.usd / 1e6

    draft, strong = ((per_token(model, TokenUsage(input_tokens=1_000_000)),
                      per_token(model, TokenUsage(output_tokens=1_000_000)))
                     for model in (DRAFT_PRICE_NAME, STRONG_PRICE_NAME))
    return draft, strong


def costs(rows: Sequence[dict[str, Any]], book: PriceBook | None = None) -> tuple[Floats, Floats]:
    """(draft cost, strong cost) per row in USD: the row's logged costs where it has them, else estimated from
    text lengths."""
    (d_in, d_out), (s_in, s_out) = pair_prices(book)
    tokens_in = np.array([_chars(prompt_of(row)) for row in rows]) / CHARS_PER_TOKEN
    draft_out = np.array([_chars(row.get("draft_response")) for row in rows]) / CHARS_PER_TOKEN
    strong_out = np.array([_chars(row.get("strong_response")) for row in rows]) / CHARS_PER_TOKEN
    draft, strong = tokens_in * d_in + draft_out * d_out, tokens_in * s_in + strong_out * s_out
    for i, row in enumerate(rows):
        if LOGGED_DRAFT_COST in row:
            draft[i], strong[i] = float(row[LOGGED_DRAFT_COST]), float(row[LOGGED_STRONG_COST])
    return draft, strong


def router_predictions(rows: Sequence[dict[str, Any]], artifact_dir: Path, *, cache_dir: Path | None,
                       progress: bool) -> tuple[Floats, str]:
    """(the router artifact's P(draft good enough) per row, its version)."""
    from router.embedding.encoder import DIMENSION, MODEL_NAME, Encoder
    from router.embedding.text import embedding_text
    from router.policy.classifier import load_artifact
    from router.policy.features import FEATURES_VERSION
    from training.dataset import embed

    artifact = load_artifact(artifact_dir, expected_dimension=DIMENSION, expected_features_version=FEATURES_VERSION)
    requests = [request_from_prompt(prompt_of(row)) for row in rows]
    vectors = embed([embedding_text(r) for r in requests], Encoder, model_name=MODEL_NAME, cache_dir=cache_dir,
                    progress=progress)
    features = np.vstack([feature_vector(vectors[i], r) for i, r in enumerate(requests)])
    return artifact.predict(features).astype(np.float64), artifact.metadata.version


def policy_data(rows: Sequence[dict[str, Any]], p_router: Floats | None, p_verify: Floats) -> PolicyData:
    """The policy's inputs for these rows (no router: NaN, never skipped)."""
    draft_cost, strong_cost = costs(rows)
    return PolicyData(
        p_router=p_router if p_router is not None else np.full(len(rows), np.nan),
        p_verify=p_verify, draft_quality=np.array([quality(r, "draft_score") for r in rows]),
        strong_quality=np.array([quality(r, "strong_score") for r in rows]), draft_cost=draft_cost,
        strong_cost=strong_cost, groups=np.array([str(r.get("source") or "data") for r in rows]))


def verifier_predictions(requests: Sequence[dict[str, Any]], draft_texts: Sequence[str | None], p_router: Floats,
                         artifact_dir: Path) -> tuple[Floats, dict[str, float | str]]:
    """(the verifier artifact's P(draft good enough) per request, NaN where there is no draft answer; its
    thresholds). Each request's evidence carries the router's prediction, as in serving."""
    from router.policy.classifier import load_artifact
    from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION, verifier_features
    from router.scoring.types import DraftEvidence

    artifact = load_artifact(artifact_dir, expected_dimension=0, expected_features_version=VERIFIER_FEATURES_VERSION,
                             expected_embedding_model="none", expected_feature_names=VERIFIER_FEATURE_NAMES)
    rows = [i for i, text in enumerate(draft_texts) if text]
    p_verify = np.full(len(requests), np.nan)
    if rows:
        features = np.array([verifier_features(DraftEvidence(
            requests[i], {"type": "message", "role": "assistant", "content": [{"type": "text", "text": draft_texts[i]}],
                          "stop_reason": "end_turn"}, predicted_good=float(p_router[i]))) for i in rows],
            dtype=np.float32)
        p_verify[rows] = artifact.predict(features)
    thresholds = {key: value for key, value in artifact.metadata.thresholds.items()
                  if isinstance(value, float | int | str) and not isinstance(value, bool)}
    return p_verify, thresholds
