"""Benchmark: would a cost-aware skip order save more than the router's P(good) order at the same quality?

The router escalates the requests least likely to be served well by the draft first. A cost-aware order ranks
them by the expected quality gain per dollar instead: (1 - P(good)) / the strong call's estimated price, where
the price is known before the call from the prompt's tokens plus an assumed number of output tokens. Replays
both orders on the RouteLLM validation and test splits with `cascadeflow eval`'s cost estimates and prints the
strong-call share and the cost saved at 95% and 97% of GPT-4's quality, next to random routing and the oracle.
Not a test: figures only (the serving policy does not use the cost-aware order).

    PYTHONPATH=. .venv/bin/python benchmarks/cost_aware_order.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from router.embedding.encoder import DIMENSION, MODEL_NAME, Encoder
from router.policy.classifier import latest_artifact_dir, load_artifact
from router.policy.features import FEATURES_VERSION
from training.dataset import embed_requests, load_jsonl
from training.evaluate import (
    Curve,
    Outcomes,
    at_quality,
    curve_for_order,
    estimate_outcomes,
    oracle_curve,
    random_curve,
    router_curve,
    user_chars,
)
from training.policy_data import CHARS_PER_TOKEN, pair_prices

TARGETS = (0.95, 0.97)
ASSUMED_OUTPUT_TOKENS = (0, 100, 250, 500)


def cells(curve: Curve, outcomes: Outcomes) -> str:
    parts = []
    for target in TARGETS:
        share, saved = at_quality(curve, outcomes, target)
        parts.append(f"{100 * share:5.1f}% strong, {100 * saved:5.1f}% saved")
    return " | ".join(parts)


def main() -> None:
    directory = latest_artifact_dir(Path("models"))
    if directory is None:
        raise SystemExit("no router artifact under models/")
    artifact = load_artifact(directory, expected_dimension=DIMENSION, expected_features_version=FEATURES_VERSION)
    data = load_jsonl(Path("data/routellm/dev.jsonl"))
    (_, _), (strong_in, strong_out) = pair_prices()
    print(f"router {directory.name}; columns: at {' | at '.join(f'{100 * t:.0f}%' for t in TARGETS)} of GPT-4 quality")
    for split in ("validation", "test"):
        part = data.subset(data.splits() == split)
        embeddings = embed_requests(part, Encoder, model_name=MODEL_NAME, cache_dir=Path(".cache/training"),
                                    progress=False)
        p_good = artifact.predict(part.features(embeddings)).astype(np.float64)
        outcomes = estimate_outcomes(part)
        tokens_in = np.array([user_chars(r) for r in part.requests], dtype=np.float64) / CHARS_PER_TOKEN
        print(f"\n{split} split, {len(part)} requests")
        print(f"  {'random':<34}{cells(random_curve(outcomes), outcomes)}")
        print(f"  {'oracle':<34}{cells(oracle_curve(outcomes), outcomes)}")
        print(f"  {'router P(good) order':<34}{cells(router_curve(p_good, outcomes), outcomes)}")
        for output_tokens in ASSUMED_OUTPUT_TOKENS:
            price = tokens_in * strong_in + output_tokens * strong_out
            order = np.argsort(-(1.0 - p_good) / price, kind="stable")
            label = f"gain per dollar, {output_tokens} out tokens"
            print(f"  {label:<34}{cells(curve_for_order(order, outcomes), outcomes)}")


if __name__ == "__main__":
    main()
