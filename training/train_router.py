"""Train the learned router: P(draft good enough) from the request alone, calibrated, with its skip threshold.

    python -m training.train_router --data data/routellm/dev.jsonl --quality-target 0.95
    python -m training.train_router --log sqlite:///var/outcomes.sqlite --data data/routellm/dev.jsonl

Reads top to bottom:
1. load labelled rows from data sets (`--data`) and/or the proxy's outcome log (`--log`, SQLite or PostgreSQL);
2. split them by hash of the prompt (default) or by time (`--split time`, logs: the newest rows are held out);
3. embed the prompts with the serving encoder (cached under `--cache-dir`) and build the feature matrix with
   the same code the server runs (`router.policy.features`);
4. fit each candidate estimator on the training split, calibrate it, keep the one with the best validation APGR;
5. choose the skip threshold on the validation split: the largest share of drafts that still keeps the stated
   share of the strong model's quality (`--quality-target`), not a share of strong calls;
6. evaluate on the held-out test split against random routing and the oracle;
7. write `models/router-<version>/` (model.joblib, metadata.json, report.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from numpy.typing import NDArray
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from router.policy.classifier import ArtifactMetadata, RouterArtifact, save_artifact
from router.policy.ensemble import RouterEnsemble
from router.policy.features import FEATURE_NAMES, FEATURES_VERSION
from training.dataset import BatchEncoder, Labelled, concat, embed_requests, load_jsonl, load_outcome_log, split_of
from training.evaluate import (
    Policy,
    apgr,
    calls_to_recover,
    choose_skip_threshold,
    estimate_outcomes,
    report_tables,
    router_curve,
)

Floats = NDArray[np.float64]
MIN_ROWS = 20
MIN_VALIDATION_ROWS = 200


@dataclass(frozen=True)
class Candidate:
    """An estimator family to try: a name, its description, a factory of unfitted estimators, and whether its
    fit takes the quality the strong model adds (`gain`) besides the label."""

    name: str
    description: str
    build: Callable[[int], Any]
    uses_gain: bool = False


def candidates(calibration_folds: int, embedding_dimension: int) -> list[Candidate]:
    """The estimators compared on validation; each yields calibrated probabilities."""
    def logistic(c: float) -> Callable[[int], Any]:
        return lambda seed: CalibratedClassifierCV(
            make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed)),
            method="sigmoid", cv=calibration_folds)

    def boosted(seed: int) -> Any:
        return CalibratedClassifierCV(
            HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                           l2_regularization=1.0, random_state=seed),
            method="sigmoid", cv=calibration_folds)

    def ensemble(seed: int) -> Any:
        return RouterEnsemble(embedding_dimension=embedding_dimension, calibration_folds=calibration_folds,
                              random_state=seed)

    return [
        Candidate("ensemble", "RouterEnsemble (boosted trees, logistic, cosine kNN, gain regression), "
                  "Platt-calibrated", ensemble, uses_gain=True),
        Candidate("boosted-trees", "HistGradientBoosting, sigmoid-calibrated", boosted),
        *(Candidate(f"logistic-C{c:g}", f"StandardScaler + LogisticRegression(C={c:g}), sigmoid-calibrated",
                    logistic(c)) for c in (0.01, 0.1)),
    ]


def fit_candidate(candidate: Candidate, seed: int, x: NDArray[np.float32], data: Labelled) -> Any:
    """A fitted estimator of this family."""
    model = candidate.build(seed)
    if candidate.uses_gain:
        return model.fit(x, data.labels, gain=data.strong_quality - data.draft_quality)
    return model.fit(x, data.labels)


def split_rows(data: Labelled, how: str, test_share: float = 0.2, validation_share: float = 0.1) -> NDArray[np.str_]:
    """The split of each row: by hash of its prompt id, or by time (the newest rows are validation, then test)."""
    if how == "hash":
        return np.array([split_of(i) for i in data.ids])
    if data.created_at is None:
        times = np.arange(len(data), dtype=np.float64)  # data sets have no time: their order stands for it
    else:
        times = np.where(np.isnan(data.created_at), -np.inf, data.created_at)
    order = np.argsort(times, kind="stable")
    n = len(data)
    n_test, n_validation = int(round(n * test_share)), int(round(n * validation_share))
    splits = np.full(n, "train", dtype=object)
    splits[order[n - n_test:]] = "test"
    splits[order[n - n_test - n_validation:n - n_test]] = "validation"
    return splits.astype(str)


def _auc(labels: NDArray[np.int64], scores: Floats) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else math.nan


def fit_and_select(x: NDArray[np.float32], data: Labelled, splits: NDArray[np.str_], *, seed: int,
                   progress: bool) -> tuple[Any, Candidate, dict[str, dict[str, float]]]:
    """Fit every candidate on the training split and keep the best by validation APGR (AUC breaks ties)."""
    train, validation = splits == "train", splits == "validation"
    y = data.labels
    minority = int(min(np.bincount(y[train], minlength=2)))
    if minority < 2:
        raise SystemExit(f"the training split needs both labels at least twice (minority class: {minority} rows)")
    folds = max(2, min(5, minority))
    outcomes = estimate_outcomes(data.subset(validation))
    results: dict[str, dict[str, float]] = {}
    best: tuple[float, float, Any, Candidate] | None = None
    dimension = x.shape[1] - len(FEATURE_NAMES)
    for candidate in tqdm(candidates(folds, dimension), desc="fitting", unit="model", disable=not progress):
        model = fit_candidate(candidate, seed, x[train], data.subset(train))
        p_good = model.predict_proba(x[validation])[:, 1].astype(np.float64)
        score = apgr(router_curve(p_good, outcomes), outcomes)
        auc = _auc(y[validation], p_good)
        results[candidate.name] = {"validation_apgr": score, "validation_auc": auc}
        key = (-math.inf if math.isnan(score) else score, -math.inf if math.isnan(auc) else auc)
        if best is None or key > best[:2]:
            best = (*key, model, candidate)
    assert best is not None
    return best[2], best[3], results


def threshold_basis(*, candidate: Candidate, seed: int, x: NDArray[np.float32], data: Labelled,
                    splits: NDArray[np.str_], p_validation: Floats) -> tuple[Labelled, Floats]:
    """The rows and predictions the skip threshold is chosen on: the validation split when it is large enough,
    else out-of-fold predictions over training and validation together (a small log's validation split may
    hold a handful of rows of one label)."""
    validation = splits == "validation"
    if validation.sum() >= MIN_VALIDATION_ROWS:
        return data.subset(validation), p_validation
    pooled = splits != "test"
    labels = data.labels[pooled]
    folds = max(2, min(5, int(min(np.bincount(labels, minlength=2)))))
    try:
        pooled_data = data.subset(pooled)
        params = {"gain": pooled_data.strong_quality - pooled_data.draft_quality} if candidate.uses_gain else {}
        predicted = cross_val_predict(candidate.build(seed), x[pooled], labels, method="predict_proba",
                                      cv=StratifiedKFold(folds, shuffle=True, random_state=0), params=params)
    except ValueError:  # too few rows of a label for nested calibration folds: use what validation there is
        return data.subset(validation), p_validation
    return data.subset(pooled), np.asarray(predicted[:, 1], dtype=np.float64)


def summary_scores(p_good: Floats, data: Labelled) -> dict[str, dict[str, float]]:
    """AUC, APGR and CPT(50%)/CPT(80%) per source and overall."""
    outcomes = estimate_outcomes(data)
    sources = np.array(data.sources)
    scores: dict[str, dict[str, float]] = {}
    for group in ["overall", *sorted(set(data.sources))]:
        mask = np.ones(len(data), dtype=bool) if group == "overall" else sources == group
        part = outcomes.subset(mask)
        curve = router_curve(p_good[mask], part)
        scores[group] = {"rows": float(mask.sum()), "auc": _auc(data.labels[mask], p_good[mask]),
                         "apgr": apgr(curve, part), "cpt50": calls_to_recover(curve, part, 0.5),
                         "cpt80": calls_to_recover(curve, part, 0.8)}
    return scores


def skip_only(p_good: Floats, threshold: float) -> Policy:
    """The skip step alone: below the threshold to the strong model, the draft for the rest."""
    skip = p_good < threshold
    return Policy(drafted=~skip, strong=skip, skip_threshold=threshold, quality_threshold=None)


def load_data(paths: Sequence[Path], logs: Sequence[str], limit: int | None) -> Labelled:
    """Every labelled row asked for, data sets first."""
    parts = [load_jsonl(path, limit=limit) for path in paths] + [load_outcome_log(url) for url in logs]
    if not parts:
        raise SystemExit("nothing to train on: give --data and/or --log")
    return concat(parts)


def train(args: argparse.Namespace, encoder_factory: Callable[[], BatchEncoder] | None = None) -> Path:
    """Run the whole training flow and return the new artifact's directory."""
    from router.embedding.encoder import DIMENSION, MODEL_NAME, Encoder

    progress = not args.no_progress
    started = time.monotonic()
    data = load_data(args.data or [], args.log or [], args.limit)
    if len(data) < MIN_ROWS:
        raise SystemExit(f"only {len(data)} labelled rows; at least {MIN_ROWS} are needed")
    splits = split_rows(data, args.split)
    if not (splits == "validation").any() or not (splits == "test").any():
        raise SystemExit("the split left no validation or test rows; add data")
    embeddings = embed_requests(data, encoder_factory or Encoder, model_name=MODEL_NAME, cache_dir=args.cache_dir,
                                progress=progress)
    x = data.features(embeddings)
    model, chosen, compared = fit_and_select(x, data, splits, seed=args.seed, progress=progress)
    validation, test = data.subset(splits == "validation"), data.subset(splits == "test")
    p_validation = model.predict_proba(x[splits == "validation"])[:, 1].astype(np.float64)
    p_test = model.predict_proba(x[splits == "test"])[:, 1].astype(np.float64)
    threshold_rows, p_threshold = threshold_basis(candidate=chosen, seed=args.seed, x=x, data=data, splits=splits,
                                                  p_validation=p_validation)
    choice = choose_skip_threshold(p_threshold, estimate_outcomes(threshold_rows), args.quality_target)
    created = dt.datetime.now(dt.UTC)
    version = args.version or created.strftime("%Y%m%d-%H%M%S")
    metadata = ArtifactMetadata(
        version=version, created_at=created.isoformat(timespec="seconds"), sklearn_version=sklearn.__version__,
        features_version=FEATURES_VERSION, feature_names=FEATURE_NAMES, embedding_model=MODEL_NAME,
        embedding_dimension=DIMENSION,
        model={"name": chosen.name, "description": chosen.description, "seed": args.seed, "compared": compared},
        training_data=tuple(data.origin),
        split={"how": args.split, "rows": {name: int((splits == name).sum()) for name in ("train", "validation",
                                                                                           "test")}},
        scores={"validation": summary_scores(p_validation, validation), "test": summary_scores(p_test, test)},
        thresholds={"skip_threshold": choice.skip_threshold, "quality_target": args.quality_target,
                    "validation_strong_share": choice.strong_share,
                    "validation_quality_ratio": choice.quality_ratio},
    )
    directory = save_artifact(RouterArtifact(model=model, metadata=metadata), args.out / f"router-{version}")
    report = (f"# Router {version}\n\nModel: {chosen.description}. Trained on {int((splits == 'train').sum())} "
              f"rows; skip threshold {choice.skip_threshold:.4f} keeps {100 * args.quality_target:.0f}% of "
              f"strong quality on validation with {100 * choice.strong_share:.1f}% strong calls.\n\n"
              f"## Held-out test split ({len(test)} rows)\n\n"
              + report_tables(p_test, test, target=args.quality_target,
                              policy=skip_only(p_test, choice.skip_threshold)))
    (directory / "report.md").write_text(report, encoding="utf-8")
    if progress:
        print(report)
        print(f"wrote {directory} in {time.monotonic() - started:.0f} s")
    return directory


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="cascadeflow train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="labelled JSONL (repeatable)")
    parser.add_argument("--log", action="append", help="outcome log URL (repeatable), e.g. sqlite:///var/outcomes.sqlite")
    parser.add_argument("--split", choices=["hash", "time"], default="hash")
    parser.add_argument("--quality-target", type=float, default=0.95,
                        help="share of the strong model's quality to keep (chooses the skip threshold)")
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--version", help="artifact version (default: the UTC time)")
    parser.add_argument("--limit", type=int, help="read at most this many rows of each data set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/training"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not 0.0 < args.quality_target <= 1.0:
        parser.error("--quality-target must be in (0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Entry point."""
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
