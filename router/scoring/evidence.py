"""The verifier's features: everything known about a draft answer, as one versioned row of numbers.

The post-hoc measures enter as features (their values, and whether they applied), not as hand weights; then
token log-probability statistics where the draft provider returned them, the answer's length and structure
against the request, agreement among extra samples (self-consistency) and the learned router's prediction.
Absent evidence is a 0 with its `has_*` flag at 0, so one model serves drafts with and without it. Serving
and training call the same function; serving passes the components the hand-weighted scorer has already
measured, so the measures run once per draft. The outcome log keeps each judged draft's row (numbers only) with
VERIFIER_FEATURES_VERSION, and `cascadeflow train --verifier --outcomes` trains on those rows as logged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from router.scoring.extract import answer_text, question_text
from router.scoring.measures import MEASURES
from router.scoring.types import Component, DraftEvidence

VERIFIER_FEATURES_VERSION = "2"
LOW_LOGPROB = math.log(0.5)
"""A token the model gave less than even odds."""

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_CODE_FENCE = re.compile(r"^```", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*]|\d+[.)])\s", re.MULTILINE)

_MEASURE_NAMES = tuple(name for name, _ in MEASURES)
VERIFIER_FEATURE_NAMES: tuple[str, ...] = (
    *(f"measure_{name}" for name in _MEASURE_NAMES),
    *(f"applies_{name}" for name in _MEASURE_NAMES),
    "has_logprobs", "logprob_mean", "logprob_min", "logprob_low_share", "logprob_tokens_log",
    "answer_chars_log", "question_chars_log", "answer_to_question_log_ratio", "answer_lines_log",
    "answer_numbers", "question_numbers", "answer_ends_with_number", "code_fences", "list_items",
    "has_agreement", "agreement", "has_prediction", "predicted_good",
)


def _logprob_stats(values: tuple[float, ...] | None) -> list[float]:
    if not values:
        return [0.0, 0.0, 0.0, 0.0, 0.0]
    finite = [v for v in values if math.isfinite(v)] or [-30.0]
    low = sum(1 for v in finite if v < LOW_LOGPROB) / len(finite)
    return [1.0, sum(finite) / len(finite), max(min(finite), -30.0), low, math.log1p(len(finite))]


def _shape(question: str, answer: str) -> list[float]:
    answer_chars, question_chars = math.log1p(len(answer)), math.log1p(len(question))
    numbers = _NUMBER.findall(answer)
    ends_with_number = bool(numbers) and bool(_NUMBER.search(answer.strip()[-24:]))
    return [answer_chars, question_chars, answer_chars - question_chars, math.log1p(answer.count("\n")),
            float(min(len(numbers), 50)), float(min(len(_NUMBER.findall(question)), 50)), float(ends_with_number),
            float(len(_CODE_FENCE.findall(answer)) // 2), float(min(len(_LIST_ITEM.findall(answer)), 50))]


def verifier_features(evidence: DraftEvidence, measured: Iterable[Component] | None = None) -> tuple[float, ...]:
    """The feature row of a draft (in VERIFIER_FEATURE_NAMES order). `measured`: the components the scorer
    already took of this evidence (router/scoring/scorer.py; a measure's value does not depend on its weight),
    else every measure runs here."""
    found = {component.name: component for component in measured} if measured is not None else None
    values, applies = [], []
    for name, measure in MEASURES:
        component = measure(evidence, 1.0) if found is None else found.get(name)
        values.append(0.0 if component is None or component.fatal else component.value)
        applies.append(0.0 if component is None else 1.0)
    answer, question = answer_text(evidence.answer), question_text(evidence.request)
    agreement, predicted = evidence.agreement, evidence.predicted_good
    row = [*values, *applies, *_logprob_stats(evidence.logprobs), *_shape(question, answer),
           float(agreement is not None), agreement or 0.0, float(predicted is not None), predicted or 0.0]
    return tuple(float(v) for v in row)
