"""The verify step: P(draft good enough) from the trained verifier (or the hand-weighted score without one),
and the decision to serve the draft or escalate. The hard gates (truncation, empty, invalid JSON or tool call)
escalate whatever the probability. The draft's verifier feature row is computed once, from the components the
scorer has measured, when the verifier needs it or the outcome log keeps it (it is on the verdict)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.pipeline.outcome import DraftRun, Verdict
from router.policy.rules import Control, accept_draft
from router.scoring import Component, ConfidenceScore, ConfidenceScorer, DraftEvidence
from router.scoring.evidence import verifier_features
from router.settings import CascadeRule
from router.types import JSONObject

if TYPE_CHECKING:
    from router.verifier import Verifier


class VerifyStep:
    """Judges a complete draft against the accept threshold (the verifier's, or the rule's for the fallback)."""

    def __init__(self, scorer: ConfidenceScorer, verifier: Verifier | None = None, *,
                 logging_features: bool = False) -> None:
        self._scorer = scorer
        self._verifier = verifier
        self._logging_features = logging_features

    async def run(self, draft: DraftRun, hub_request: JSONObject, rule: CascadeRule, control: Control,
                  predicted_good: float | None) -> Verdict:
        """Accept or escalate, and why."""
        assert draft.completion is not None and draft.completion.message is not None
        evidence = DraftEvidence(request=hub_request, answer=draft.completion.message,
                                 logprobs=draft.completion.logprobs, predicted_good=predicted_good,
                                 agreement=draft.agreement)
        score, threshold = self._scorer.score(evidence), rule.quality_threshold
        judging = self._verifier is not None and self._verifier.artifact is not None and score.hard_fail is None
        features = verifier_features(evidence, score.components) if judging or self._logging_features else None
        judged = await self._verifier.judge(evidence, rule.verify.profile, features=features) \
            if self._verifier is not None and judging else None
        if judged is not None:
            p_good, threshold, version = judged
            verdict = Component("verifier", p_good, 1.0, f"verifier {version}: P(draft good enough)={p_good:.3f}")
            score = ConfidenceScore(p_good, (*score.components, verdict))
        if accept_draft(score.value, score.hard_fail, threshold, control):
            reason = "forced by x-cascadeflow-force" if control.force == "draft" else "confidence reached the threshold"
            return Verdict(score, True, reason, features)
        reason = score.hard_fail or f"confidence {score.value:.3f} below {threshold:g}"
        return Verdict(score, False, reason, features)
