"""The draft step: the request adapted to the draft model, answered completely (buffered, never shown)."""

from __future__ import annotations

import logging

from router.pipeline.outcome import DraftRun
from router.policy.capabilities import adapt_betas, adapt_request, capabilities_of
from router.providers.call import Upstream
from router.providers.registry import NoCredentials, ProviderRegistry, Target
from router.settings import CascadeRule
from router.types import ClientCall, Dialect, JSONObject

logger = logging.getLogger("router.pipeline.draft")


def draft_request(call: ClientCall, target: Target, hub_request: JSONObject) -> tuple[JSONObject, bool]:
    """The request for the draft model, and whether it is already in the target's wire format. A chat client on
    a chat draft keeps its own body (unknown fields included) with `max_tokens` capped to what the draft can
    produce; everything else is the hub request adapted to the draft (raises NotServableByDraft)."""
    model = target.upstream_model
    if target.native and call.dialect is Dialect.OPENAI_CHAT:
        body = dict(call.body)
        limit = capabilities_of(model).max_output_tokens
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int):
                body[key] = min(body[key], limit)
        return body, True
    return adapt_request(hub_request, model), False


class DraftStep:
    """Runs the draft of a cascade rule to completion."""

    def __init__(self, registry: ProviderRegistry, upstream: Upstream) -> None:
        self._registry = registry
        self._upstream = upstream

    async def run(self, call: ClientCall, rule: CascadeRule, hub_request: JSONObject) -> DraftRun:
        """The draft's complete answer, or a failed run saying why (NotServableByDraft is raised)."""
        target = self._registry.resolve(rule.draft_model, call.dialect, buffered=True)
        request, native = draft_request(call, target, hub_request)
        model, provider = target.upstream_model, target.provider.name
        beta_header = call.headers.get("anthropic-beta")
        beta = (adapt_betas(beta_header, model) or "") if beta_header is not None else None
        logprobs = target.wire.dialect is Dialect.OPENAI_CHAT and target.provider.settings.supports_logprobs
        try:
            buffered = await self._upstream.buffer(call, target, request, native=native, timeout_s=rule.draft_timeout_s,
                                                   beta=beta, logprobs=logprobs)
        except NoCredentials as exc:
            logger.info("draft skipped for %s: %s", call.request_id, exc)
            return DraftRun(model, provider, None, 0.0, f"draft {model} failed: {exc}")
        completion = buffered.completion
        if not completion.complete or completion.message is None:
            failure = f"draft {model} failed: {completion.error}"
            logger.info("draft failed for %s: %s", call.request_id, failure)
            return DraftRun(model, provider, completion, buffered.latency_ms, failure)
        return DraftRun(model, provider, completion, buffered.latency_ms)
