"""Train the post-hoc verifier: P(draft good enough | request, draft answer), calibrated, as an artifact, and
choose the serving policy's two thresholds together.

Reads labelled data sets whose rows carry the draft's answer (`draft_response`; RouteLLM's GSM8K and MT-bench
rows, or a local-model data set that adds `draft_logprobs` and `draft_samples`) and turns each into the
verifier's feature row (router/scoring/evidence.py, the same code the server runs); and/or the proxy's outcome
logs (`--outcomes`, SQLite or PostgreSQL URLs), whose labelled drafts carry the feature row the server logged
when it judged them, used as logged (training/verifier_log.py: they form the policy profile `log`, priced with
their real costs; the hand-weighted score needs the draft's text, so its AUC is not given for them). Rows are
split by hash of the prompt id as the router does (the test split is never trained or chosen on). Every data
source counts the same in total, and rows with agreement evidence are also trained without it, so one artifact
serves rules with and without samples. The candidates are compared by out-of-fold ROC AUC; with those
out-of-fold predictions and the router's, training/policy.py chooses the router's skip threshold and the accept
threshold together: the cheapest pair that keeps `--quality-target` of the strong model's quality in every
source. Writes `models/verifier-<version>/` with its report: held-out AUC next to the hand-weighted score's per
source, the policy on the held-out split, and the quality/cost curve.

    cascadeflow train --verifier --data data/routellm/dev.jsonl --data data/local/qwen-0.5b-1.5b.jsonl
    cascadeflow train --verifier --outcomes sqlite:///var/outcomes.sqlite --no-router

The comparison runs 5-fold cross-validation by prompt: training refuses, saying so, when the split it fits on
has fewer than 5 prompts of either label, or the held-out split has no row.
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
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.policy.classifier import ArtifactMetadata, RouterArtifact, file_sha256, read_metadata, save_artifact
from router.scoring import ConfidenceScorer
from router.scoring.agreement import sample_agreement
from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION, verifier_features
from router.scoring.types import DraftEvidence
from training.dataset import group_of, split_of
from training.policy import curve_table
from training.policy_data import router_predictions
from training.verifier_log import LOGGED_FEATURES, describe, load_log_rows, logged_predictions
from training.verifier_policy import (
    DATA_SHA256,
    Judged,
    ProfileChoice,
    choose_profiles,
    load_undrafted,
    router_in_sample,
)

TARGETS = (0.90, 0.95, 0.98, 0.99)
FOLDS = 5


def shipped_router() -> Path | None:
    """The newest router artifact shipped with the proxy, if any."""
    from router.assets import shipped_models_dir
    from router.policy.classifier import latest_artifact_dir

    return latest_artifact_dir(shipped_models_dir())

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


def evidence_of(row: dict[str, Any], predicted_good: float | None = None) -> DraftEvidence:
    """Everything the server would know about this draft (and the router's prediction, when given)."""
    logprobs = row.get("draft_logprobs")
    agreement = row.get("draft_agreement")
    samples = row.get("draft_samples")
    if isinstance(samples, list) and samples:  # recomputed, so the evidence follows this code's extraction
        agreement = sample_agreement(hub_request(row), draft_answer(row),
                                     [draft_answer({"draft_response": str(text)}) for text in samples])
    return DraftEvidence(request=hub_request(row), answer=draft_answer(row),
                         logprobs=tuple(float(v) for v in logprobs) if isinstance(logprobs, list) and logprobs
                         else None,
                         agreement=float(agreement) if isinstance(agreement, int | float) else None,
                         predicted_good=predicted_good)


def load_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Labelled rows that carry a draft answer (each tagged with its file's sha256); none without paths."""
    rows = []
    for path in paths:
        digest = file_sha256(path)
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row.get("draft_response") and row.get("draft_good_enough") in (0, 1, True, False):
                    rows.append(row | {DATA_SHA256: digest})
    if paths and not rows:
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
    """ROC AUC over the rows that have a score (not NaN), NaN when a label is missing among them."""
    known = ~np.isnan(scores)
    labels, scores = labels[known], scores[known]
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else math.nan


def features_and_hand_scores(rows: list[dict[str, Any]], p_router: Floats | None) -> tuple[NDArray[np.float32], Floats]:
    """Each row's verifier features (a log row's as logged) and the hand-weighted score (NaN for a log row: it
    needs the draft's text)."""
    scorer, features, hand = ConfidenceScorer(), [], []
    for i, row in enumerate(rows):
        if LOGGED_FEATURES in row:
            features.append(tuple(row[LOGGED_FEATURES]))
            hand.append(math.nan)
            continue
        evidence = evidence_of(row, float(p_router[i]) if p_router is not None else None)
        features.append(verifier_features(evidence))
        hand.append(scorer.score(evidence).value)
    return np.array(features, dtype=np.float32), np.array(hand, dtype=np.float64)


def router_of(rows: list[dict[str, Any]], args: argparse.Namespace) -> tuple[Floats | None, str | None]:
    """(the router's P(good) per row, its version): the router artifact's on a data row's prompt, the one it
    logged at serving on a log row it routed (NaN on the others); (None, None) without a router."""
    if args.router is None:
        return None, None
    data = [row for row in rows if LOGGED_FEATURES not in row]  # the data rows come first
    p_data, version = router_predictions(data, args.router, cache_dir=args.cache_dir, progress=not args.no_progress
                                         ) if data else (np.zeros(0), read_metadata(args.router).version)
    return np.concatenate([p_data, logged_predictions(rows[len(data):], version)]), version


def check_enough(labels: NDArray[np.int64], groups: list[str], test_rows: int) -> None:
    """Refuse, saying why, data too small for the comparison's cross-validation or for a held-out score."""
    for label, name in ((1, "good enough"), (0, "not good enough")):
        found = len({group for group, y in zip(groups, labels.tolist(), strict=True) if y == label})
        if found < FOLDS:
            raise SystemExit(f"too few labelled prompts to train on: {found} with a draft {name} in the split "
                             f"trained on, {FOLDS} needed ({FOLDS}-fold cross-validation by prompt); label more "
                             "traffic (labels.exploration_rate) or add --data")
    if not test_rows:
        raise SystemExit("too few labelled prompts to train on: none in the held-out test split (20% of the "
                         "prompts, by hash); label more traffic or add --data")


def source_weights(sources: NDArray[np.str_]) -> Floats:
    """Per-row weights under which every data source counts the same in total (small local sets are not
    drowned by the large RouteLLM one)."""
    names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    return (len(sources) / (len(names) * counts[inverse])).astype(np.float64)


def fit(model: Any, x: NDArray[np.float32], y: NDArray[np.int64], weights: Floats) -> Any:
    """Fit with sample weights where the estimator takes them."""
    try:
        return model.fit(x, y, sample_weight=weights)
    except TypeError:
        return model.fit(x, y)


def with_partial_evidence(x: NDArray[np.float32], y: NDArray[np.int64], weights: Floats,
                          ) -> tuple[NDArray[np.float32], NDArray[np.int64], Floats]:
    """Training rows plus the same rows without their agreement evidence and without the router's prediction
    (each, and both): one model then serves rules that sample and rules that do not, with or without a router."""
    parts, labels, weight_parts = [x], [y], [weights]
    for names in (("has_agreement", "agreement"), ("has_prediction", "predicted_good")):
        columns = [VERIFIER_FEATURE_NAMES.index(name) for name in names]
        stacked = np.vstack(parts)
        rows = stacked[:, columns[0]] > 0
        stripped = stacked[rows].copy()
        stripped[:, columns] = 0.0
        parts.append(stripped)
        labels.append(np.concatenate(labels)[rows])
        weight_parts.append(np.concatenate(weight_parts)[rows])
    return np.vstack(parts), np.concatenate(labels), np.concatenate(weight_parts)


def out_of_fold(name: str, x: NDArray[np.float32], y: NDArray[np.int64], weights: Floats, groups: list[str],
                seed: int) -> Floats:
    """Each row's prediction from a model trained on the other folds (folds by prompt group)."""
    p = np.zeros(len(y), dtype=np.float64)
    for train_index, test_index in StratifiedGroupKFold(FOLDS, shuffle=True, random_state=seed).split(x, y, groups):
        model = fit(candidates(seed)[name], *with_partial_evidence(
            x[train_index], y[train_index], weights[train_index]))
        p[test_index] = model.predict_proba(x[test_index])[:, 1]
    return p


def train(args: argparse.Namespace) -> Path:
    """Fit, compare, calibrate, choose the policy's thresholds, write the artifact and its report."""
    logs = [load_log_rows(url) for url in args.outcomes]
    rows = load_rows(args.data) + [row for log in logs for row in log.rows]
    if not rows:
        raise SystemExit("no labelled rows with a draft answer or a logged verifier feature row to train on")
    p_router, router_version = router_of(rows, args)
    x, hand = features_and_hand_scores(rows, p_router)
    y = np.array([int(row["draft_good_enough"]) for row in rows], dtype=np.int64)
    ids = [str(row.get("id") or i) for i, row in enumerate(rows)]
    groups = [group_of(i) for i in ids]
    test = np.array([split_of(i) == "test" for i in ids])
    sources = np.array([str(row.get("source") or "data") for row in rows])
    weights = source_weights(sources)
    fitting = ~test
    fit_groups = [g for g, t in zip(groups, test, strict=True) if not t]
    check_enough(y[fitting], fit_groups, int(test.sum()))
    compared: dict[str, dict[str, float]] = {}
    oof: dict[str, Floats] = {}
    for name in candidates(args.seed):
        oof[name] = out_of_fold(name, x[fitting], y[fitting], weights[fitting], fit_groups, args.seed)
        compared[name] = {"out_of_fold_auc": auc(y[fitting], oof[name])}
    chosen = max(compared, key=lambda n: compared[n]["out_of_fold_auc"])
    model = fit(candidates(args.seed)[chosen], *with_partial_evidence(x[fitting], y[fitting], weights[fitting]))
    p_test = model.predict_proba(x[test])[:, 1].astype(np.float64)
    scores = scores_by_source(y[test], p_test, hand[test], list(sources[test]))
    undrafted = load_undrafted(args.data)
    p_undrafted = None if args.router is None else np.zeros(0)
    if args.router is not None and undrafted:
        p_undrafted = router_predictions(undrafted, args.router, cache_dir=args.cache_dir,
                                         progress=not args.no_progress)[0]
    undrafted_test = np.array([split_of(str(row.get("id"))) == "test" for row in undrafted], dtype=bool)

    def judged(keep: NDArray[np.bool_], p_verify: Floats, extra: NDArray[np.bool_]) -> Judged:
        """The kept drafted rows and the kept rows without a draft answer (no verifier prediction)."""
        drafted = Judged([row for row, k in zip(rows, keep, strict=True) if k],
                         None if p_router is None else p_router[keep], p_verify)
        return drafted.plus(Judged([row for row, k in zip(undrafted, extra, strict=True) if k],
                                   None if p_undrafted is None else p_undrafted[extra],
                                   np.full(int(extra.sum()), np.nan)))

    clean = ~router_in_sample(rows, args.router)
    clean_undrafted = ~router_in_sample(undrafted, args.router)
    profiles = choose_profiles(judged(fitting & clean, oof[chosen][clean[fitting]], ~undrafted_test & clean_undrafted),
                               judged(test, p_test, undrafted_test),
                               target=args.quality_target, margin_z=args.margin_z, targets=TARGETS,
                               max_served_worse=args.max_served_worse, served_worse_z=args.served_worse_z)
    created = dt.datetime.now(dt.UTC)
    version = args.version or created.strftime("%Y%m%d-%H%M%S")
    with_router = router_version is not None and any(choice.routed for choice in profiles)
    thresholds: dict[str, Any] = profiles[0].thresholds(with_router) | {
        "quality_target": args.quality_target, "max_served_worse": args.max_served_worse,
        "served_worse_z": args.served_worse_z, "default_profile": profiles[0].name,
        "profiles": {choice.name: choice.thresholds(with_router) for choice in profiles}}
    if with_router:
        thresholds["router_version"] = router_version
    metadata = ArtifactMetadata(
        version=version, created_at=created.isoformat(timespec="seconds"), sklearn_version=sklearn.__version__,
        features_version=VERIFIER_FEATURES_VERSION, feature_names=VERIFIER_FEATURE_NAMES, embedding_model="none",
        embedding_dimension=0, model={"name": chosen, "seed": args.seed, "compared": compared,
                                      "weights": "each data source counts equally"},
        training_data=(*({"path": str(p)} for p in args.data), *(log.origin for log in logs)),
        split={"how": "hash", "rows": {"fit": int(fitting.sum()), "test": int(test.sum())}},
        scores={"test": scores}, thresholds=thresholds,
    )
    directory = save_artifact(RouterArtifact(model=model, metadata=metadata), args.out / f"verifier-{version}")
    text = report(version, chosen, metadata, scores, profiles, [describe(log.origin) for log in logs])
    (directory / "report.md").write_text(text, encoding="utf-8")
    if not args.no_progress:
        print(text)
        print(f"wrote {directory}")
    return directory


def scores_by_source(labels: NDArray[np.int64], p_good: Floats, hand: Floats, sources: list[str]) -> dict[str, Any]:
    """AUC of the verifier and of the hand-weighted score, overall and per source."""
    groups = {"overall": np.ones(len(labels), dtype=bool)} | {s: np.array(sources) == s for s in sorted(set(sources))}
    return {name: {"rows": int(mask.sum()), "verifier_auc": auc(labels[mask], p_good[mask]),
                   "hand_auc": auc(labels[mask], hand[mask])} for name, mask in groups.items()}


def report(version: str, chosen: str, metadata: ArtifactMetadata, scores: dict[str, Any],
           profiles: list[ProfileChoice], logs: Sequence[str] = ()) -> str:
    """The artifact's report: the outcome logs' rows, held-out AUC against the hand-weighted score (– where it
    cannot be taken), each profile's pair and its curve."""
    target = metadata.thresholds["quality_target"]
    lines = [f"# Verifier {version}", "", *logs, *([""] if logs else []),
             f"Model: {chosen} (calibrated). The policy for {100 * target:.0f}% of the strong model's quality in "
             f"every source, serving at most {100 * metadata.thresholds['max_served_worse']:.0f}% of its drafts worse "
             f"than the strong answer (Wilson bound, z={metadata.thresholds['served_worse_z']:g}), per profile (the "
             "first is the default; a rule picks another with `verify: {profile: <name>}`):", ""]
    for choice in profiles:
        on, test = choice.chosen, choice.test
        skip = f"skip the draft below router P(good) {on.skip_threshold:.3f}, " if "router_version" in \
            metadata.thresholds and choice.routed else ""
        lines += [f"- **{choice.name}** ({choice.rows} rows): {skip}serve a draft from verifier P(good) "
                  f"{min(on.accept_threshold, 1.0):.3f}. Out of fold: {100 * on.quality_ratio:.1f}% of strong quality, "
                  f"{100 * on.cost_saved:.1f}% saved. Held-out test split: {100 * test.quality_ratio:.1f}% of strong "
                  f"quality (worst source {100 * test.worst_group_ratio:.1f}%), {100 * test.cost_saved:.1f}% saved, "
                  f"{100 * test.served_by_draft:.1f}% served by the draft, {100 * test.served_wrong:.1f}% of those "
                  "worse than the strong answer."]
    lines += ["", "## Held-out test split: ROC AUC for 'draft good enough'", "",
              *(["The hand-weighted score needs the draft's text: it is not taken on outcome-log rows.", ""]
                if logs else []),
              "| source | rows | verifier | hand-weighted score |", "| --- | ---: | ---: | ---: |"]
    for name, row in scores.items():
        lines.append(f"| {name} | {row['rows']} | {_auc_text(row['verifier_auc'])} | {_auc_text(row['hand_auc'])} |")
    for choice in profiles:
        lines += ["", f"## The curve of profile {choice.name} (out of fold, the rows the pair was chosen on)", "",
                  *curve_table(choice.curve)]
    return "\n".join(lines) + "\n"


def _auc_text(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="cascadeflow train --verifier", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", default=[], help="labelled JSONL (repeatable)")
    parser.add_argument("--outcomes", action="append", default=[],
                        help="the proxy's outcome log, e.g. sqlite:///var/outcomes.sqlite (repeatable)")
    parser.add_argument("--quality-target", type=float, default=0.95,
                        help="share of the strong model's quality to keep in every source (default: 0.95)")
    parser.add_argument("--max-served-worse", type=float, default=0.10,
                        help="the most of the served drafts that may be worse than the strong answer, out of fold "
                             "(default: 0.10)")
    parser.add_argument("--served-worse-z", type=float, default=1.0,
                        help="standard errors by which the Wilson bound on that share must stay under the cap "
                             "(default: 1.0)")
    parser.add_argument("--margin-z", type=float, default=0.5,
                        help="standard errors by which every source must clear the target (default: 0.5)")
    parser.add_argument("--router", type=Path, default=shipped_router(),
                        help="router artifact whose skip threshold is chosen with the accept threshold "
                             "(default: the shipped one)")
    parser.add_argument("--no-router", dest="router", action="store_const", const=None,
                        help="choose the accept threshold alone (every request drafted)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/training"), help="embedding cache")
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--version", help="artifact version (default: the UTC time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not args.data and not args.outcomes:
        parser.error("give --data and/or --outcomes")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Entry point."""
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
