"""The cascade step: draft first, score it, accept or escalate to the strong model, and account for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

from router.bridge import Bridge
from router.costs import CascadeCost, PriceBook, TokenUsage, cascade_cost
from router.drafting import DraftFailed, DraftResult, replay_answer, run_draft
from router.policy.capabilities import NotServableByDraft
from router.policy.rules import Control, accept_draft
from router.providers.registry import ProviderRegistry
from router.scoring import ConfidenceScore, ConfidenceScorer, DraftEvidence
from router.settings import CascadeRule
from router.types import Answer, ClientCall, Dialect, JSONAnswer, JSONObject, client_family

logger = logging.getLogger("router.cascade")


@dataclass(frozen=True)
class CascadeOutcome:
    """What the cascade did for one request."""

    rule: CascadeRule
    route: str
    reason: str
    draft: DraftResult | None = None
    score: ConfidenceScore | None = None
    accepted: bool = False
    cost: CascadeCost | None = None
    answer_message: JSONObject | None = None


def usage_of(dialect: Dialect, answer: Answer) -> TokenUsage | None:
    """The token usage of a complete JSON answer in a client dialect."""
    if not isinstance(answer, JSONAnswer) or answer.status != 200:
        return None
    try:
        usage = orjson.loads(answer.body).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(usage, dict):
        return None
    if dialect is Dialect.ANTHROPIC:
        return TokenUsage.from_anthropic(usage)
    if dialect is Dialect.OPENAI_CHAT:
        return TokenUsage.from_openai_chat(usage)
    return TokenUsage.from_openai_responses(usage)


def cascade_headers(outcome: CascadeOutcome, wasted_usd: float | None = None) -> dict[str, str]:
    """The X-CascadeFlow-* response headers."""
    accepted = "skipped" if outcome.draft is None else ("true" if outcome.accepted else "false")
    headers = {
        "x-cascadeflow-route": outcome.route,
        "x-cascadeflow-draft-model": outcome.rule.draft_model,
        "x-cascadeflow-strong-model": outcome.rule.strong_model,
        "x-cascadeflow-draft-accepted": accepted,
    }
    if outcome.score is not None:
        headers["x-cascadeflow-confidence"] = f"{outcome.score.value:.4f}"
    cost = outcome.cost
    if cost is not None:
        headers["x-cascadeflow-actual-cost"] = f"{cost.actual_usd:.8f}"
        headers["x-cascadeflow-original-cost"] = f"{cost.strong_only_usd:.8f}"
        headers["x-cascadeflow-cost-saved"] = f"{cost.saved_usd:.8f}"
        if outcome.draft is not None and not outcome.accepted:
            headers["x-cascadeflow-draft-cost-wasted"] = f"{cost.wasted_draft_usd:.8f}"
    elif wasted_usd is not None:
        headers["x-cascadeflow-draft-cost-wasted"] = f"{wasted_usd:.8f}"
    return headers


class Cascade:
    """Runs one request through a cascade rule."""

    def __init__(self, registry: ProviderRegistry, bridge: Bridge, scorer: ConfidenceScorer,
                 prices: PriceBook) -> None:
        self._registry = registry
        self._bridge = bridge
        self._scorer = scorer
        self._prices = prices

    async def run(self, call: ClientCall, rule: CascadeRule, control: Control, hub_request: JSONObject,
                  predicted_good: float | None = None) -> tuple[Answer, CascadeOutcome]:
        """Draft, score (the learned router's prediction is one component), then serve the draft or the strong."""
        draft_target = self._registry.resolve(rule.draft_model, client_family(call.dialect))
        try:
            draft = await run_draft(call, draft_target, hub_request, rule.draft_timeout_s)
        except (DraftFailed, NotServableByDraft) as exc:
            logger.info("draft skipped for %s: %s", call.request_id, exc)
            return await self.strong(call, CascadeOutcome(rule, "strong", str(exc)))
        evidence = DraftEvidence(request=hub_request, answer=draft.message, logprobs=draft.logprobs,
                                 predicted_good=predicted_good)
        score = self._scorer.score(evidence)
        if not accept_draft(score.value, score.hard_fail, rule.quality_threshold, control):
            reason = score.hard_fail or f"confidence {score.value:.3f} below {rule.quality_threshold}"
            return await self.strong(call, CascadeOutcome(rule, "escalated", reason, draft, score))
        cost = cascade_cost(self._prices, draft_model=rule.draft_model, strong_model=rule.strong_model,
                            draft_usage=draft.usage, strong_usage=None, accepted=True)
        outcome = CascadeOutcome(rule, "draft", "confidence reached the threshold", draft, score, True, cost,
                                 draft.message)
        return replay_answer(call, draft.message, cascade_headers(outcome)), outcome

    async def strong(self, call: ClientCall, outcome: CascadeOutcome) -> tuple[Answer, CascadeOutcome]:
        """The strong model's answer, relayed live when streaming, with the cascade's headers."""
        target = self._registry.resolve(outcome.rule.strong_model, client_family(call.dialect))
        answer = await self._bridge.forward(call, target)
        strong_usage = usage_of(call.dialect, answer)
        wasted = None
        if outcome.draft is not None:
            wasted = self._prices.cost(outcome.rule.draft_model, outcome.draft.usage).usd
        if strong_usage is not None:
            cost = cascade_cost(self._prices, draft_model=outcome.rule.draft_model,
                                strong_model=outcome.rule.strong_model,
                                draft_usage=outcome.draft.usage if outcome.draft else None,
                                strong_usage=strong_usage, accepted=False)
            outcome = CascadeOutcome(outcome.rule, outcome.route, outcome.reason, outcome.draft, outcome.score,
                                     False, cost)
        answer.headers.update(cascade_headers(outcome, wasted))
        return answer, outcome
