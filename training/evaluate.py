"""Replay the learned routing policy on labelled data (cache aside) and print the standard routing metrics.

    cascadeflow eval --data data/routellm/dev.jsonl --config config.yaml --split test
    python -m training.evaluate --data data/routellm/dev.jsonl --artifact models/router-<version>

Policies compared: the router (requests sorted by P(draft good enough); the least likely go to the strong
model), random routing, the oracle (strong only where it beats the draft), always-draft and always-strong.
Metrics, per source and overall (RouteLLM `evals/evaluate.py` definitions, on the full curve of strong-call
shares 0..100%): APGR = area under the performance-gap-recovered curve, PGR = (q - q_draft) / (q_strong -
q_draft); CPT(x) = the share of strong calls needed to recover x of the gap; then the strong calls and cost
saved at `--quality-target` of the strong model's quality; and the whole serving policy replayed ("@policy"):
below the skip threshold (the config's, else the artifact's) a request goes to the strong model; otherwise the
draft's answer is scored post hoc (the prediction is one component) and escalated below the config's cascade
rule threshold. Rows without draft text (MMLU) are decided by the skip step alone.
Costs are estimates: the data has no token counts, so tokens are characters / 4 (user turns in, the answer
out; `NO_ANSWER_TOKENS` for rows without answer text, e.g. MMLU), priced with `router.costs.PriceBook`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from router.costs import PriceBook
from router.policy.features import FEATURES_VERSION
from router.types import JSONObject
from training.dataset import Labelled
from training.policy_data import CHARS_PER_TOKEN, DRAFT_PRICE_NAME, STRONG_PRICE_NAME, pair_prices

NO_ANSWER_TOKENS = 5.0
TARGETS = (0.90, 0.95, 0.98, 0.99)

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Outcomes:
    """Per-request quality and estimated USD cost of each tier."""

    draft_quality: Floats
    strong_quality: Floats
    draft_cost: Floats
    strong_cost: Floats

    def __len__(self) -> int:
        return len(self.draft_quality)

    def subset(self, mask: NDArray[np.bool_]) -> Outcomes:
        """The requests where `mask` is true."""
        return Outcomes(self.draft_quality[mask], self.strong_quality[mask], self.draft_cost[mask],
                        self.strong_cost[mask])

    @property
    def draft_mean(self) -> float:
        return float(self.draft_quality.mean())

    @property
    def strong_mean(self) -> float:
        return float(self.strong_quality.mean())


@dataclass(frozen=True)
class Curve:
    """Quality and cost as the share of strong calls grows from 0 to 1 (one point per request added)."""

    strong_share: Floats
    quality: Floats
    cost: Floats


@dataclass(frozen=True)
class ThresholdChoice:
    """A skip threshold and what it achieved on the data it was chosen on."""

    target: float
    skip_threshold: float
    strong_share: float
    quality_ratio: float


@dataclass(frozen=True)
class Policy:
    """Where the policy sent each request: drafted (the draft ran) and strong (the strong model answered)."""

    drafted: NDArray[np.bool_]
    strong: NDArray[np.bool_]
    skip_threshold: float | None
    quality_threshold: float | None
    judge: str = "hand score"

    def subset(self, mask: NDArray[np.bool_]) -> Policy:
        """The requests where `mask` is true."""
        return Policy(self.drafted[mask], self.strong[mask], self.skip_threshold, self.quality_threshold, self.judge)

    def describe(self) -> str:
        """The thresholds, for the report."""
        skip = "none" if self.skip_threshold is None else f"{self.skip_threshold:.4f}"
        quality = "none" if self.quality_threshold is None else f"{self.quality_threshold:.3f}"
        return f"skip below router P(good) {skip}, then serve the draft from {self.judge} {quality}"


def replay_policy(p_good: Floats, data: Labelled, *, skip_threshold: float | None,
                  quality_threshold: float | None, p_verify: Floats | None = None,
                  accept_threshold: float | None = None) -> Policy:
    """Replay the serving policy: skip the draft below the threshold, else judge the draft's answer and escalate
    it: by the trained verifier's P(good) against its accept threshold when given, else by the hand-weighted
    score (with the prediction as a component) against the quality threshold. Rows without draft text (MMLU)
    are judged by the skip step alone."""
    from router.scoring import ConfidenceScorer, DraftEvidence

    scorer = ConfidenceScorer()
    skip = p_good < skip_threshold if skip_threshold is not None else np.zeros(len(p_good), dtype=bool)
    escalate = np.zeros(len(p_good), dtype=bool)
    if p_verify is not None and accept_threshold is not None:
        escalate = ~skip & ~np.isnan(p_verify) & (np.nan_to_num(p_verify, nan=1.0) < accept_threshold)
        quality_threshold = accept_threshold
    elif quality_threshold is not None:
        for i in np.flatnonzero(~skip):
            text = data.draft_texts[int(i)] if data.draft_texts else None
            if not text:
                continue
            answer = {"role": "assistant", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}
            score = scorer.score(DraftEvidence(data.requests[int(i)], answer, predicted_good=float(p_good[i])))
            escalate[i] = score.hard_fail is not None or score.value < quality_threshold
    return Policy(drafted=~skip, strong=skip | escalate, skip_threshold=skip_threshold,
                  quality_threshold=quality_threshold, judge="verifier" if p_verify is not None else "hand score")


def user_chars(request: JSONObject) -> int:
    messages = request.get("messages") or []
    return sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict) and m.get("role") == "user")


def estimate_outcomes(data: Labelled, book: PriceBook | None = None) -> Outcomes:
    """Quality from the labels and costs estimated from text lengths (see the module docstring)."""
    (d_in, d_out), (s_in, s_out) = pair_prices(book)
    tokens_in = np.array([user_chars(r) for r in data.requests], dtype=np.float64) / CHARS_PER_TOKEN

    def tokens_out(chars: Floats) -> Floats:
        return np.where(chars > 0, chars / CHARS_PER_TOKEN, NO_ANSWER_TOKENS)

    return Outcomes(
        draft_quality=data.draft_quality.astype(np.float64), strong_quality=data.strong_quality.astype(np.float64),
        draft_cost=tokens_in * d_in + tokens_out(data.draft_output_chars) * d_out,
        strong_cost=tokens_in * s_in + tokens_out(data.strong_output_chars) * s_out,
    )


def curve_for_order(order: NDArray[np.intp], outcomes: Outcomes) -> Curve:
    """The curve when requests go to the strong model in `order` (first = first to be escalated)."""
    n = len(outcomes)
    gain = (outcomes.strong_quality - outcomes.draft_quality)[order]
    extra = (outcomes.strong_cost - outcomes.draft_cost)[order]
    quality = (outcomes.draft_quality.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / max(n, 1)
    cost = outcomes.draft_cost.sum() + np.concatenate([[0.0], np.cumsum(extra)])
    return Curve(np.arange(n + 1, dtype=np.float64) / max(n, 1), quality, cost)


def router_curve(p_good: Floats, outcomes: Outcomes) -> Curve:
    """Escalate the requests least likely to be served well by the draft first."""
    return curve_for_order(np.argsort(p_good, kind="stable"), outcomes)


def oracle_curve(outcomes: Outcomes) -> Curve:
    """Escalate by the true gain of the strong model over the draft, largest first."""
    return curve_for_order(np.argsort(-(outcomes.strong_quality - outcomes.draft_quality), kind="stable"), outcomes)


def random_curve(outcomes: Outcomes) -> Curve:
    """The expected curve of random routing: a straight line from always-draft to always-strong."""
    share = np.arange(len(outcomes) + 1, dtype=np.float64) / max(len(outcomes), 1)
    quality = outcomes.draft_mean + share * (outcomes.strong_mean - outcomes.draft_mean)
    cost = outcomes.draft_cost.sum() + share * (outcomes.strong_cost.sum() - outcomes.draft_cost.sum())
    return Curve(share, quality, cost)


def apgr(curve: Curve, outcomes: Outcomes) -> float:
    """Average performance gap recovered: the area under PGR over the strong-call share (0.5 = random)."""
    gap = outcomes.strong_mean - outcomes.draft_mean
    if gap <= 0:
        return math.nan
    pgr = (curve.quality - outcomes.draft_mean) / gap
    return float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(curve.strong_share)) / 2.0)


def calls_to_recover(curve: Curve, outcomes: Outcomes, fraction: float) -> float:
    """CPT(fraction): the smallest share of strong calls whose quality recovers `fraction` of the gap."""
    gap = outcomes.strong_mean - outcomes.draft_mean
    if gap <= 0:
        return 0.0
    return _first_share(curve, outcomes.draft_mean + fraction * gap)


def _first_share(curve: Curve, quality: float) -> float:
    reached = np.flatnonzero(curve.quality >= quality - 1e-12)
    return float(curve.strong_share[reached[0]]) if len(reached) else math.nan


def at_quality(curve: Curve, outcomes: Outcomes, target: float) -> tuple[float, float]:
    """(strong-call share, cost saved vs always-strong) at the first point reaching `target` x strong quality."""
    reached = np.flatnonzero(curve.quality >= target * outcomes.strong_mean - 1e-12)
    if not len(reached):
        return math.nan, math.nan
    k = int(reached[0])
    return float(curve.strong_share[k]), 1.0 - float(curve.cost[k]) / float(outcomes.strong_cost.sum())


def choose_skip_threshold(p_good: Floats, outcomes: Outcomes, target: float) -> ThresholdChoice:
    """The largest share of drafts that keeps >= target of strong quality, at this and every higher threshold.

    Candidates lie midway between consecutive distinct P(good) values; requests with P(good) < t go to the
    strong model. Requiring every higher threshold to reach the target too keeps noise from picking a lucky dip.
    """
    values = np.unique(p_good)
    candidates = np.concatenate([[0.0], (values[1:] + values[:-1]) / 2.0, [1.0]]) if len(values) else np.array([1.0])
    order = np.argsort(p_good, kind="stable")
    sorted_p = p_good[order]
    gain = np.concatenate([[0.0], np.cumsum((outcomes.strong_quality - outcomes.draft_quality)[order])])
    strong_total = max(outcomes.strong_quality.sum(), 1e-12)
    counts = np.searchsorted(sorted_p, candidates, side="left")
    ratios = (outcomes.draft_quality.sum() + gain[counts]) / strong_total
    ok = ratios >= target - 1e-12
    safe = np.flip(np.logical_and.accumulate(np.flip(ok)))  # this candidate and every higher one reach the target
    index = int(np.argmax(safe)) if safe.any() else len(candidates) - 1
    return ThresholdChoice(target=target, skip_threshold=float(candidates[index]),
                           strong_share=float(counts[index]) / max(len(p_good), 1), quality_ratio=float(ratios[index]))


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def group_table(p_good: Floats, labels: NDArray[np.int64], outcomes: Outcomes, *, target: float,
                policy: Policy | None) -> list[str]:
    """Markdown rows comparing the router with random, oracle, always-draft and always-strong on one group."""
    from sklearn.metrics import roc_auc_score

    tq = f"{round(100 * target)}%"
    header = ["policy", "AUC", "APGR", "CPT(50%)", "CPT(80%)", f"strong calls @{tq}", f"cost saved @{tq}"]
    if policy is not None:
        header += ["strong calls @policy", "drafts accepted @policy", "quality @policy", "cost saved @policy"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    strong_q, strong_cost = outcomes.strong_mean, float(outcomes.strong_cost.sum())
    auc = float(roc_auc_score(labels, p_good)) if len(set(labels.tolist())) == 2 else math.nan
    share_t = float(np.mean(policy.strong)) if policy is not None and len(outcomes) else math.nan
    k_t = round(share_t * len(outcomes)) if policy is not None and len(outcomes) else 0
    curves = {"router": router_curve(p_good, outcomes), "random": random_curve(outcomes),
              "oracle": oracle_curve(outcomes)}
    for name, curve in curves.items():
        strong_at, saved_at = at_quality(curve, outcomes, target)
        row = [name, _num(auc) if name == "router" else ("0.500" if name == "random" else "–"),
               _num(apgr(curve, outcomes)), _pct(calls_to_recover(curve, outcomes, 0.5)),
               _pct(calls_to_recover(curve, outcomes, 0.8)), _pct(strong_at), _pct(saved_at)]
        if policy is not None:
            if name == "router":  # the whole policy: skip, draft, post-hoc score, escalate
                quality = float(np.where(policy.strong, outcomes.strong_quality, outcomes.draft_quality).mean())
                cost = float((np.where(policy.drafted, outcomes.draft_cost, 0.0)
                              + np.where(policy.strong, outcomes.strong_cost, 0.0)).sum())
                accepted = float(np.mean(policy.drafted & ~policy.strong))
            else:  # the same share of strong calls, chosen by this policy
                quality, cost = float(curve.quality[k_t]), float(curve.cost[k_t])
                accepted = 1 - share_t
            row += [_pct(share_t), _pct(accepted), _pct(quality / strong_q), _pct(1 - cost / strong_cost)]
        lines.append("| " + " | ".join(row) + " |")
    for name, use_strong in (("always-draft", False), ("always-strong", True)):
        quality = strong_q if use_strong else outcomes.draft_mean
        cost = strong_cost if use_strong else float(outcomes.draft_cost.sum())
        reaches = quality >= target * strong_q - 1e-12
        row = [name, "–", "–", "–", "–", _pct(float(use_strong)) if reaches else "n/a",
               _pct(1 - cost / strong_cost) if reaches else "n/a"]
        if policy is not None:
            row += [_pct(float(use_strong)), _pct(float(not use_strong)), _pct(quality / strong_q),
                    _pct(1 - cost / strong_cost)]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def report_tables(p_good: Floats, data: Labelled, *, target: float, policy: Policy | None,
                  book: PriceBook | None = None) -> str:
    """The evaluation report: one markdown table per source and one overall."""
    outcomes = estimate_outcomes(data, book)
    sources = np.array(data.sources)
    blocks = []
    for group in ["overall", *sorted(set(data.sources))]:
        mask = np.ones(len(data), dtype=bool) if group == "overall" else sources == group
        part = outcomes.subset(mask)
        title = (f"### {group}: n={int(mask.sum())}, draft quality {part.draft_mean:.3f}, strong quality "
                 f"{part.strong_mean:.3f} (draft = {_pct(part.draft_mean / max(part.strong_mean, 1e-12))} of strong)")
        rows = group_table(p_good[mask], data.labels[mask], part, target=target,
                           policy=policy.subset(mask) if policy is not None else None)
        blocks.append("\n".join([title, "", *rows]))
    note = (f"Quality target {round(100 * target)}% of the strong model's quality; policy = "
            f"{'none' if policy is None else policy.describe()}. Costs are estimates from text lengths "
            f"({DRAFT_PRICE_NAME} vs {STRONG_PRICE_NAME} prices, {CHARS_PER_TOKEN:.0f} chars per token, "
            f"{NO_ANSWER_TOKENS:.0f} output tokens where the data has no answer text).")
    return "\n\n".join([*blocks, note]) + "\n"


def policy_thresholds(config: Path | None, rule_name: str | None,
                      artifact_threshold: float | None) -> tuple[float | None, float | None]:
    """(skip threshold, post-hoc quality threshold) from a config: its learned_router and cascade rule."""
    if config is None:
        return artifact_threshold, None
    from router.settings import load_settings

    settings = load_settings(config)
    rules = settings.cascade_rules
    rule = next((r for r in rules if rule_name in (r.request_model, r.name)), None) if rule_name else (
        rules[0] if rules else None)
    if rule_name and rule is None:
        raise SystemExit(f"{config}: no cascade rule {rule_name!r}")
    skip = settings.learned_router.skip_threshold
    return (skip if skip is not None else artifact_threshold), (rule.quality_threshold if rule else None)


def main(argv: Sequence[str] | None = None) -> str:
    """Evaluate an artifact (and a config's policy) on a labelled data set's split and print the tables."""
    from router.embedding.encoder import DIMENSION, MODEL_NAME, Encoder
    from router.policy.classifier import latest_artifact_dir, load_artifact
    from training.dataset import concat, embed_requests, load_jsonl, load_outcome_log

    parser = argparse.ArgumentParser(prog="cascadeflow eval", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="labelled JSONL (repeatable)")
    parser.add_argument("--log", action="append", default=[], help="outcome log URL, e.g. sqlite:///var/outcomes.sqlite")
    parser.add_argument("--config", type=Path, help="proxy config: its skip threshold and cascade rule's threshold")
    parser.add_argument("--rule", help="the cascade rule (request model or name; default: the first)")
    parser.add_argument("--artifact", type=Path, help="artifact directory (default: the newest under --models)")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--split", choices=["test", "validation", "train", "all"], default="test")
    parser.add_argument("--quality-target", type=float, default=0.95)
    parser.add_argument("--threshold", type=float, help="skip threshold (default: the config's, else the verifier's "
                        "paired one, else the artifact's)")
    parser.add_argument("--verifier", type=Path, help="verifier artifact (default: the newest under --models)")
    parser.add_argument("--no-verifier", action="store_true", help="judge drafts by the hand-weighted score")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/training"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    directory = args.artifact or latest_artifact_dir(args.models)
    if directory is None:
        parser.error(f"no artifact under {args.models}; train one with training/train_router.py")
    artifact = load_artifact(directory, expected_dimension=DIMENSION, expected_features_version=FEATURES_VERSION)
    paths = args.data if args.data or args.log else [Path("data/routellm/dev.jsonl")]
    data = concat([*(load_jsonl(path) for path in paths or []), *(load_outcome_log(url) for url in args.log)])
    if args.split != "all":
        data = data.subset(data.splits() == args.split)
    if not len(data):
        parser.error(f"no rows in the {args.split} split")
    embeddings = embed_requests(data, Encoder, model_name=MODEL_NAME, cache_dir=args.cache_dir,
                                progress=not args.no_progress)
    p_good = artifact.predict(data.features(embeddings))
    verifier_dir = None if args.no_verifier else args.verifier or latest_artifact_dir(args.models, "verifier-")
    p_verify, paired = None, dict[str, float | str]()
    if verifier_dir is not None:
        from training.policy_data import verifier_predictions

        p_verify, paired = verifier_predictions(data.requests, data.draft_texts or [None] * len(data), p_good,
                                                verifier_dir)
    paired_skip = paired.get("skip_threshold") if paired.get("router_version") == artifact.metadata.version else None
    accept = paired.get("accept_threshold")
    skip, quality = policy_thresholds(args.config, args.rule, float(paired_skip) if paired_skip is not None
                                      else artifact.skip_threshold)
    if args.threshold is not None:
        skip = args.threshold
    policy = replay_policy(p_good, data, skip_threshold=skip, quality_threshold=quality, p_verify=p_verify,
                           accept_threshold=float(accept) if accept is not None else None)
    judge = f"verifier {verifier_dir}" if verifier_dir is not None else "the hand-weighted score"
    text = (f"## Router {directory} and {judge} on the {args.split} split ({len(data)} requests)\n\n"
            + report_tables(p_good, data, target=args.quality_target, policy=policy))
    print(text)
    return text


if __name__ == "__main__":
    main()
