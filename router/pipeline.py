"""The one orchestrator: rule → route → draft → score → accept or escalate → account."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

from router.bridge import Bridge, to_hub_request
from router.costs import CascadeCost, PriceBook, TokenUsage, cascade_cost
from router.drafting import DraftFailed, DraftResult, replay_answer, run_draft
from router.policy.capabilities import NotServableByDraft
from router.policy.rules import Control, accept_draft, decide_route, find_rule
from router.providers.registry import ProviderRegistry
from router.scoring import ConfidenceScore, ConfidenceScorer, DraftEvidence
from router.settings import CascadeRule
from router.types import Answer, ClientCall, Dialect, Endpoint, JSONAnswer, client_family

logger = logging.getLogger("router.pipeline")


@dataclass(frozen=True)
class CascadeOutcome:
    """What the cascade did for one request (reported in headers, logged later)."""

    rule: CascadeRule
    route: str
    reason: str
    draft: DraftResult | None = None
    score: ConfidenceScore | None = None
    accepted: bool = False


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


def cascade_headers(outcome: CascadeOutcome, cost: CascadeCost | None,
                    wasted_usd: float | None = None) -> dict[str, str]:
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
    if cost is not None:
        headers["x-cascadeflow-actual-cost"] = f"{cost.actual_usd:.8f}"
        headers["x-cascadeflow-original-cost"] = f"{cost.strong_only_usd:.8f}"
        headers["x-cascadeflow-cost-saved"] = f"{cost.saved_usd:.8f}"
    if cost is not None and outcome.draft is not None and not outcome.accepted:
        headers["x-cascadeflow-draft-cost-wasted"] = f"{cost.wasted_draft_usd:.8f}"
    elif wasted_usd is not None:
        headers["x-cascadeflow-draft-cost-wasted"] = f"{wasted_usd:.8f}"
    return headers


class Pipeline:
    """Serves every client call: pass-through, or the cascade when a rule names the requested model."""

    def __init__(self, registry: ProviderRegistry, bridge: Bridge, rules: list[CascadeRule],
                 scorer: ConfidenceScorer, prices: PriceBook) -> None:
        self._registry = registry
        self._bridge = bridge
        self._rules = rules
        self._scorer = scorer
        self._prices = prices

    async def handle(self, call: ClientCall) -> Answer:
        """Answer one client call in its own dialect."""
        rule = find_rule(self._rules, call.model) if call.endpoint is not Endpoint.COUNT_TOKENS else None
        control = Control.from_headers(call.headers)
        decision = decide_route(rule, control, call.body, call.headers)
        family = client_family(call.dialect)
        if rule is None or decision.route == "pass_through":
            return await self._bridge.forward(call, self._registry.resolve(call.model, family))
        if decision.route == "strong":
            return await self._strong(call, CascadeOutcome(rule, "strong", decision.reason))
        hub_request = to_hub_request(call)
        draft_target = self._registry.resolve(rule.draft_model, family)
        try:
            draft = await run_draft(call, draft_target, hub_request, rule.draft_timeout_s)
        except (DraftFailed, NotServableByDraft) as exc:
            logger.info("draft skipped for %s: %s", call.request_id, exc)
            return await self._strong(call, CascadeOutcome(rule, "strong", str(exc)))
        score = self._scorer.score(DraftEvidence(request=hub_request, answer=draft.message, logprobs=draft.logprobs))
        accepted = accept_draft(score.value, score.hard_fail, rule.quality_threshold, control)
        if not accepted:
            reason = score.hard_fail or f"confidence {score.value:.3f} below {rule.quality_threshold}"
            return await self._strong(call, CascadeOutcome(rule, "escalated", reason, draft, score))
        outcome = CascadeOutcome(rule, "draft", "confidence reached the threshold", draft, score, True)
        cost = cascade_cost(self._prices, draft_model=rule.draft_model, strong_model=rule.strong_model,
                            draft_usage=draft.usage, strong_usage=None, accepted=True)
        return replay_answer(call, draft.message, cascade_headers(outcome, cost))

    async def _strong(self, call: ClientCall, outcome: CascadeOutcome) -> Answer:
        """The strong model's answer, relayed live when streaming, with the cascade's headers."""
        target = self._registry.resolve(outcome.rule.strong_model, client_family(call.dialect))
        answer = await self._bridge.forward(call, target)
        strong_usage = usage_of(call.dialect, answer)
        cost, wasted = None, None
        if outcome.draft is not None:
            wasted = self._prices.cost(outcome.rule.draft_model, outcome.draft.usage).usd
        if strong_usage is not None:
            cost = cascade_cost(self._prices, draft_model=outcome.rule.draft_model,
                                strong_model=outcome.rule.strong_model,
                                draft_usage=outcome.draft.usage if outcome.draft else None,
                                strong_usage=strong_usage, accepted=False)
        answer.headers.update(cascade_headers(outcome, cost, wasted))
        return answer
