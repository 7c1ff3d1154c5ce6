"""The verify step: the draft's confidence score and the decision to serve it or escalate."""

from __future__ import annotations

from router.pipeline.outcome import DraftRun, Verdict
from router.policy.rules import Control, accept_draft
from router.scoring import ConfidenceScorer, DraftEvidence
from router.settings import CascadeRule
from router.types import JSONObject


class VerifyStep:
    """Scores a complete draft (the learned router's prediction is one component) against the rule's threshold."""

    def __init__(self, scorer: ConfidenceScorer) -> None:
        self._scorer = scorer

    def run(self, draft: DraftRun, hub_request: JSONObject, rule: CascadeRule, control: Control,
            predicted_good: float | None) -> Verdict:
        """Accept or escalate, and why."""
        assert draft.completion is not None and draft.completion.message is not None
        evidence = DraftEvidence(request=hub_request, answer=draft.completion.message,
                                 logprobs=draft.completion.logprobs, predicted_good=predicted_good)
        score = self._scorer.score(evidence)
        if accept_draft(score.value, score.hard_fail, rule.quality_threshold, control):
            reason = "forced by x-cascadeflow-force" if control.force == "draft" else "confidence reached the threshold"
            return Verdict(score, True, reason)
        reason = score.hard_fail or f"confidence {score.value:.3f} below {rule.quality_threshold}"
        return Verdict(score, False, reason)
