"""How well does each scoring component predict ``draft_good_enough`` on RouteLLM data? ROC AUC and accept/quality.

Usage: ``python benchmarks/score_auc.py [--data PATH]``. Rows without draft text (MMLU) are skipped.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.assets import shipped_routellm_data
from router.scoring import ConfidenceScore, ConfidenceScorer, DraftEvidence

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MAX_TOKENS = 1024


@dataclass(frozen=True)
class Scored:
    """One labelled row with the score of its draft."""

    source: str
    good: int
    draft_score: float
    strong_score: float
    score: ConfidenceScore


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """ROC AUC by the Mann-Whitney rank sum (ties get their mean rank); None when a class is missing."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def resolve_data(path: Path | None) -> Path:
    """The data file: the one asked for, else the shipped RouteLLM data."""
    data = path if path is not None else shipped_routellm_data()
    if not data.exists():
        raise SystemExit(f"no data at {data}; pass --data")
    return data


def load(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def messages_for(row: dict[str, Any], drafts: dict[str, str]) -> list[dict[str, Any]]:
    """The conversation the draft answered: the prompt, or the MT-bench turns with the draft's earlier answers."""
    if row.get("prompt"):
        return [{"role": "user", "content": row["prompt"]}]
    turns: list[str] = row.get("turns") or []
    stem = row["id"].rsplit("/", 1)[0]
    messages: list[dict[str, Any]] = []
    for number, turn in enumerate(turns, start=1):
        messages.append({"role": "user", "content": turn})
        earlier = drafts.get(f"{stem}/turn{number}")
        if number < len(turns):
            if earlier is None:
                return [{"role": "user", "content": "\n\n".join(turns)}]
            messages.append({"role": "assistant", "content": earlier})
    return messages


def evidence_for(row: dict[str, Any], drafts: dict[str, str]) -> DraftEvidence:
    """The hub request and draft answer of a row."""
    request = {"model": row["draft_model"], "max_tokens": MAX_TOKENS, "messages": messages_for(row, drafts)}
    answer = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": row["draft_response"]}],
        "stop_reason": "end_turn",
    }
    return DraftEvidence(request=request, answer=answer)


def score_rows(rows: list[dict[str, Any]], scorer: ConfidenceScorer) -> list[Scored]:
    """Score every row that has draft text."""
    with_text = [r for r in rows if isinstance(r.get("draft_response"), str)]
    drafts = {r["id"]: r["draft_response"] for r in with_text}
    return [
        Scored(
            source=r["source"].split("/")[-1],
            good=int(r["draft_good_enough"]),
            draft_score=float(r["draft_score"]),
            strong_score=float(r["strong_score"]),
            score=scorer.score(evidence_for(r, drafts)),
        )
        for r in with_text
    ]


def _cell(group: list[Scored], name: str) -> str:
    """``n=… auc`` for one component (or the combined score) over a group of rows."""
    pairs: list[tuple[float, int]] = []
    for s in group:
        if name == "combined":
            pairs.append((s.score.value, s.good))
        elif (c := s.score.component(name)) is not None:
            pairs.append((c.value, s.good))
    value = auc([p[0] for p in pairs], [p[1] for p in pairs])
    shown = "  -  " if value is None else f"{value:.3f}"
    return f"n={len(pairs):<5} {shown}"


def print_auc(groups: dict[str, list[Scored]]) -> None:
    """One line per component: rows it applied to and its AUC, per group."""
    names = ["combined"] + list(dict.fromkeys(c.name for s in groups["all"] for c in s.score.components))
    print("ROC AUC for draft_good_enough (n = rows the component applied to; 0.5 = chance)")
    print(f"{'component':<18}" + "".join(f"{g:<16}" for g in groups))
    for name in names:
        print(f"{name:<18}" + "".join(f"{_cell(group, name):<16}" for group in groups.values()))


def print_thresholds(groups: dict[str, list[Scored]]) -> None:
    """Per source: the share of drafts accepted and the quality kept, for each threshold."""
    print("\nAccept the draft when score >= threshold; quality kept = mean(served score) / mean(strong score)")
    sources = [g for g in groups if g != "all"]
    print(f"{'threshold':<10}" + "".join(f"{s + ' accepted':>20}{s + ' quality':>20}" for s in sources))
    for threshold in (0.0, *THRESHOLDS, 1.01):
        label = "all draft" if threshold == 0.0 else "all strong" if threshold > 1 else f"{threshold:.1f}"
        cells = []
        for source in sources:
            group = groups[source]
            accepted = [s.score.value >= threshold for s in group]
            served = sum(s.draft_score if a else s.strong_score for s, a in zip(group, accepted, strict=True))
            strong = sum(s.strong_score for s in group)
            cells.append(f"{sum(accepted) / len(group):>20.1%}{served / strong:>20.1%}")
        print(f"{label:<10}" + "".join(cells))


def print_distribution(groups: dict[str, list[Scored]]) -> None:
    """Quantiles of the combined score per group (where the thresholds fall)."""
    print("\nCombined score quantiles")
    for name, group in groups.items():
        values = sorted(s.score.value for s in group)
        cells = [f"p{q}={values[min(len(values) - 1, len(values) * q // 100)]:.3f}" for q in (5, 10, 25, 50)]
        print(f"{name:<10}" + "  ".join(cells) + f"  min={values[0]:.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    """Score the drafts of a RouteLLM-style file and print AUC and accept/quality tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="JSONL file (default: the shipped RouteLLM data)")
    args = parser.parse_args(argv)
    path = resolve_data(args.data)
    scored = score_rows(load(path), ConfidenceScorer())
    groups: dict[str, list[Scored]] = {"all": scored}
    for s in scored:
        groups.setdefault(s.source, []).append(s)
    counts = ", ".join(f"{g} {len(v)}" for g, v in groups.items() if g != "all")
    print(f"data: {path} ({len(scored)} rows with draft text: {counts})\n")
    print_auc(groups)
    print_thresholds(groups)
    print_distribution(groups)
    hard = sum(1 for s in scored if s.score.hard_fail)
    print(f"\nhard failures: {hard}")


if __name__ == "__main__":
    main()
