"""Post-hoc confidence of a draft answer: pure measurements combined into a ConfidenceScore."""

from __future__ import annotations

from router.scoring.measures import MEASURES, Measure
from router.scoring.scorer import ConfidenceScorer, LearnedComponent, ScoringWeights, combine
from router.scoring.types import Component, ConfidenceScore, DraftEvidence

__all__ = [
    "MEASURES",
    "Component",
    "ConfidenceScore",
    "ConfidenceScorer",
    "DraftEvidence",
    "LearnedComponent",
    "Measure",
    "ScoringWeights",
    "combine",
]
