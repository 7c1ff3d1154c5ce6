"""Combine the measures of a draft into one confidence score: a weighted mean, vetoed by hard failures."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Protocol

from router.scoring.measures import MEASURES
from router.scoring.types import Component, ConfidenceScore, DraftEvidence, clamp01

NO_EVIDENCE_VALUE = 1.0
"""The score of a draft when no weighted component applied: nothing speaks against it."""


@dataclass(frozen=True)
class ScoringWeights:
    """The weight of each component in the weighted mean; 0 reports a component without letting it count.

    The gates (truncation, empty, structured_output, tool_calls, tool_choice) act through their hard failure,
    so by default they weigh nothing when they pass.
    """

    truncation: float = 0.0
    empty: float = 0.0
    structured_output: float = 0.0
    tool_calls: float = 0.0
    tool_choice: float = 0.0
    refusal: float = 4.0
    hedging: float = 1.0
    repetition: float = 2.0
    length: float = 0.5
    logprobs: float = 2.0
    math_answer: float = 1.0
    arithmetic: float = 2.0
    predicted: float = 3.0
    learned: float = 3.0
    agreement: float = 4.0

    def __post_init__(self) -> None:
        for f in fields(self):
            weight = getattr(self, f.name)
            if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"scoring weight {f.name} must be a finite number >= 0, got {weight!r}")

    def of(self, name: str) -> float:
        """The weight of the component with this name."""
        if name not in {f.name for f in fields(self)}:
            raise KeyError(f"no scoring weight named {name!r}")
        return float(getattr(self, name))


class LearnedComponent(Protocol):
    """A trained model that estimates P(draft good enough) from the evidence, or abstains with None."""

    def predict(self, evidence: DraftEvidence) -> float | None:
        """P(draft good enough) in [0, 1], or None when the model cannot judge this draft."""
        ...


def _probability(name: str, value: float | None, weight: float, source: str) -> Component | None:
    """A component from a probability, or None when absent or not a number."""
    if value is None or math.isnan(value):
        return None
    return Component(name, clamp01(value), weight, f"{source} P(draft good enough)={value:.3f}")


def combine(components: tuple[Component, ...]) -> ConfidenceScore:
    """The weighted mean of the components' values; 0.0 with ``hard_fail`` when any component is fatal."""
    fatal = [c for c in components if c.fatal]
    if fatal:
        reason = "; ".join(f"{c.name}: {c.detail}" for c in fatal)
        return ConfidenceScore(value=0.0, components=components, hard_fail=reason)
    total = sum(c.weight for c in components)
    if total <= 0:
        return ConfidenceScore(value=NO_EVIDENCE_VALUE, components=components)
    value = sum(c.weight * c.value for c in components) / total
    return ConfidenceScore(value=clamp01(value), components=components)


class ConfidenceScorer:
    """Score a complete draft answer: run every measure, add the predicted and learned components, combine."""

    def __init__(self, weights: ScoringWeights | None = None, learned: LearnedComponent | None = None) -> None:
        self.weights = weights if weights is not None else ScoringWeights()
        self.learned = learned

    def components(self, evidence: DraftEvidence) -> tuple[Component, ...]:
        """Every component that applies to this draft, in a stable order."""
        found: list[Component | None] = [measure(evidence, self.weights.of(name)) for name, measure in MEASURES]
        found.append(_probability("predicted", evidence.predicted_good, self.weights.predicted, "router"))
        found.append(_probability("agreement", evidence.agreement, self.weights.agreement, "samples"))
        if self.learned is not None:
            found.append(_probability("learned", self.learned.predict(evidence), self.weights.learned, "learned"))
        return tuple(c for c in found if c is not None)

    def score(self, evidence: DraftEvidence) -> ConfidenceScore:
        """The confidence that the draft is good enough to serve."""
        return combine(self.components(evidence))
