"""Train the post-hoc verifier: P(draft good enough | request, draft answer), calibrated, as an artifact.

Reads labelled data sets whose rows carry the draft's answer (`draft_response`; RouteLLM's GSM8K and MT-bench
rows, or a local-model data set that adds `draft_logprobs` and `draft_agreement`), turns each into the
verifier's feature row (router/scoring/evidence.py, the same code the server runs), splits by hash of the
prompt id as the router does (so neither ever trained on the other's held-out prompts), fits calibrated
candidates, keeps the best by validation AUC, picks the accept threshold that keeps served drafts right at
the stated precision, and writes `models/verifier-<version>/` with its report: held-out ROC AUC next to the
hand-weighted score's, per source.

    cascadeflow train --verifier --data data/routellm/dev.jsonl [--precision 0.9]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from numpy.typing import NDArray
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.policy.classifier import ArtifactMetadata, RouterArtifact, save_artifact
from router.scoring import ConfidenceScorer
from router.scoring.agreement import sample_agreement
from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION, verifier_features
from router.scoring.types import DraftEvidence
from training.dataset import split_of

Floats = NDArray[np.float64]


def hub_request(row: dict[str, Any]) -> dict[str, Any]:
    """The row's prompt as a hub request (MT-bench rows: every user turn so far)."""
    turns = row.get("turns") or [row.get("prompt") or ""]
    return {"messages": [{"role": "user", "content": str(turn)} for turn in turns]}


def draft_answer(row: dict[str, Any]) -> dict[str, Any]:
    """The row's draft answer as a hub message (the last turn's answer for multi-turn rows)."""
    response = row.get("draft_response")
    text = response[-1] if isinstance(response, list) and response else response
    return {"type": "message", "role": "assistant", "content": [{"type": "text", "text": str(text)}],
            "stop_reason": str(row.get("draft_stop_reason") or "end_turn")}


def evidence_of(row: dict[str, Any]) -> DraftEvidence:
    """Everything the server would know about this draft."""
    logprobs = row.get("draft_logprobs")
    agreement = row.get("draft_agreement")
    samples = row.get("draft_samples")
    if isinstance(samples, list) and samples:  # recomputed, so the evidence follows this code's extraction
        agreement = sample_agreement(hub_request(row), draft_answer(row),
                                     [draft_answer({"draft_response": str(text)}) for text in samples])
    return DraftEvidence(request=hub_request(row), answer=draft_answer(row),
                         logprobs=tuple(float(v) for v in logprobs) if isinstance(logprobs, list) and logprobs
                         else None,
                         agreement=float(agreement) if isinstance(agreement, int | float) else None)


def load_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Labelled rows that carry a draft answer."""
    rows = []
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row.get("draft_response") and row.get("draft_good_enough") in (0, 1, True, False):
                    rows.append(row)
    if not rows:
        raise SystemExit("no labelled rows with a draft answer in the data given")
    return rows


def candidates(seed: int) -> dict[str, Any]:
    """The estimators compared, each calibrated (sigmoid) on inner folds."""
    return {
        "logistic": CalibratedClassifierCV(make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000)),
                                           method="sigmoid", cv=3),
        "boosted-trees": CalibratedClassifierCV(HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.05, max_depth=3, random_state=seed), method="sigmoid", cv=3),
    }


def auc(labels: NDArray[np.int64], scores: Floats) -> float:
    """ROC AUC, NaN when a label is missing."""
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else math.nan


def accept_threshold(labels: NDArray[np.int64], p_good: Floats, precision: float) -> float:
    """The lowest threshold at which the drafts served (P >= threshold) are right at `precision` or better,
    at this threshold and every higher one; 1.0 (serve none) when none is."""
    chosen = 1.0
    for threshold in sorted(set(p_good.tolist()), reverse=True):
        served = p_good >= threshold
        if labels[served].mean() < precision:
            break
        chosen = float(threshold)
    return chosen


def scores_by_source(labels: NDArray[np.int64], p_good: Floats, hand: Floats, sources: list[str]) -> dict[str, Any]:
    """AUC of the verifier and of the hand-weighted score, overall and per source."""
    groups = {"overall": np.ones(len(labels), dtype=bool)} | {s: np.array(sources) == s for s in sorted(set(sources))}
    return {name: {"rows": int(mask.sum()), "verifier_auc": auc(labels[mask], p_good[mask]),
                   "hand_auc": auc(labels[mask], hand[mask])} for name, mask in groups.items()}


def train(args: argparse.Namespace) -> Path:
    """Fit, compare, calibrate, choose the accept threshold, write the artifact and its report."""
    rows = load_rows(args.data)
    x = np.array([verifier_features(evidence_of(row)) for row in rows], dtype=np.float32)
    hand_scorer = ConfidenceScorer()
    hand = np.array([hand_scorer.score(evidence_of(row)).value for row in rows], dtype=np.float64)
    y = np.array([int(row["draft_good_enough"]) for row in rows], dtype=np.int64)
    splits = np.array([split_of(str(row.get("id") or i)) for i, row in enumerate(rows)])
    sources = [str(row.get("source") or "data") for row in rows]
    train_rows, validation, test = splits == "train", splits == "validation", splits == "test"
    compared, best = {}, None
    for name, model in candidates(args.seed).items():
        model.fit(x[train_rows], y[train_rows])
        score = auc(y[validation], model.predict_proba(x[validation])[:, 1])
        compared[name] = {"validation_auc": score}
        if best is None or score > best[0]:
            best = (score, name, model)
    assert best is not None
    _, chosen, model = best
    p_validation = model.predict_proba(x[validation])[:, 1].astype(np.float64)
    p_test = model.predict_proba(x[test])[:, 1].astype(np.float64)
    threshold = accept_threshold(y[validation], p_validation, args.precision)
    held_out = [s for s, t in zip(sources, test, strict=True) if t]
    scores = scores_by_source(y[test], p_test, hand[test], held_out)
    served = p_test >= threshold
    created = dt.datetime.now(dt.UTC)
    version = args.version or created.strftime("%Y%m%d-%H%M%S")
    metadata = ArtifactMetadata(
        version=version, created_at=created.isoformat(timespec="seconds"), sklearn_version=sklearn.__version__,
        features_version=VERIFIER_FEATURES_VERSION, feature_names=VERIFIER_FEATURE_NAMES, embedding_model="none",
        embedding_dimension=0, model={"name": chosen, "seed": args.seed, "compared": compared},
        training_data=tuple({"path": str(p)} for p in args.data),
        split={"how": "hash", "rows": {n: int((splits == n).sum()) for n in ("train", "validation", "test")}},
        scores={"test": scores},
        thresholds={"accept_threshold": threshold, "precision_target": args.precision,
                    "test_served_share": float(served.mean()),
                    "test_served_precision": float(y[test][served].mean()) if served.any() else math.nan},
    )
    directory = save_artifact(RouterArtifact(model=model, metadata=metadata), args.out / f"verifier-{version}")
    (directory / "report.md").write_text(report(version, chosen, metadata, scores), encoding="utf-8")
    if not args.no_progress:
        print((directory / "report.md").read_text(encoding="utf-8"))
        print(f"wrote {directory}")
    return directory


def report(version: str, chosen: str, metadata: ArtifactMetadata, scores: dict[str, Any]) -> str:
    """The artifact's report: held-out AUC against the hand-weighted score, and the accept threshold."""
    thresholds = metadata.thresholds
    lines = [f"# Verifier {version}", "", f"Model: {chosen} (calibrated). Accept threshold "
             f"{thresholds['accept_threshold']:.4f} for {100 * thresholds['precision_target']:.0f}% right among "
             f"served drafts on validation; on the test split it serves {100 * thresholds['test_served_share']:.1f}%"
             f" of drafts, {100 * thresholds['test_served_precision']:.1f}% of them right.", "",
             "## Held-out test split: ROC AUC for 'draft good enough'", "",
             "| source | rows | verifier | hand-weighted score |", "| --- | ---: | ---: | ---: |"]
    for name, row in scores.items():
        lines.append(f"| {name} | {row['rows']} | {row['verifier_auc']:.3f} | {row['hand_auc']:.3f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="cascadeflow train --verifier", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", required=True, help="labelled JSONL (repeatable)")
    parser.add_argument("--precision", type=float, default=0.9, help="share of served drafts that must be right")
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--version", help="artifact version (default: the UTC time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    """Entry point."""
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
