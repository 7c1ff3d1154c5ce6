"""Benchmark: how well each kind of evidence tells a right draft from a wrong one, on labelled draft answers.

For each data set (rows with `draft_response` and `draft_good_enough`; local-model rows also carry log-probs
and samples), prints the ROC AUC of the hand-weighted score, of agreement alone, of the mean and minimum token
log-probability, and of the verifier's features in a calibrated logistic regression, out of fold (5 folds
grouped by prompt), so no row is scored by a model that saw it. Not a test: figures only.

    .venv/bin/python benchmarks/verifier_auc.py data/local/qwen-0.5b-1.5b.jsonl [more.jsonl ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.scoring import ConfidenceScorer
from router.scoring.evidence import VERIFIER_FEATURE_NAMES, verifier_features
from training.train_verifier import evidence_of, load_rows


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC over the rows with a score; NaN when a label is missing."""
    known = ~np.isnan(scores)
    if known.sum() < 2 or len(set(labels[known].tolist())) < 2:
        return math.nan
    return float(roc_auc_score(labels[known], scores[known]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+")
    args = parser.parse_args()
    rows = load_rows(args.data)
    evidence = [evidence_of(row) for row in rows]
    y = np.array([int(row["draft_good_enough"]) for row in rows])
    x = np.array([verifier_features(e) for e in evidence], dtype=np.float32)
    column = {name: x[:, i] for i, name in enumerate(VERIFIER_FEATURE_NAMES)}
    hand = np.array([ConfidenceScorer().score(e).value for e in evidence])
    agreement = np.where(column["has_agreement"] > 0, column["agreement"], np.nan)
    mean_lp = np.where(column["has_logprobs"] > 0, column["logprob_mean"], np.nan)
    min_lp = np.where(column["has_logprobs"] > 0, column["logprob_min"], np.nan)
    folds = max(2, min(5, int(np.bincount(y, minlength=2).min())))
    model = CalibratedClassifierCV(make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000)),
                                   method="sigmoid", cv=2)
    verifier = cross_val_predict(model, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                                 method="predict_proba")[:, 1]
    sources = np.array([str(row.get("source")) for row in rows])
    print(f"{'rows':<22}{'n':>5}{'good':>6}  {'hand':>6}{'agree':>7}{'mean lp':>8}{'min lp':>7}{'verifier':>9}")
    for name in ["overall", *sorted(set(sources))]:
        mask = np.ones(len(y), dtype=bool) if name == "overall" else sources == name
        values = [auc(y[mask], s[mask]) for s in (hand, agreement, mean_lp, min_lp, verifier)]
        print(f"{name:<22}{mask.sum():>5}{y[mask].mean():>6.2f}  " + "".join(
            f"{v:>{w}.3f}" for v, w in zip(values, (6, 7, 8, 7, 9), strict=True)))


if __name__ == "__main__":
    main()
