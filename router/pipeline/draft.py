"""The draft step: the request adapted to the draft model, answered completely (buffered, never shown)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from router.costs import TokenUsage
from router.model_settings import ModelInfoTable
from router.pipeline.outcome import DraftRun, Progress
from router.policy.capabilities import adapt_betas, adapt_request, capabilities_of, has_tools, logprobs_wanted
from router.providers.call import Upstream
from router.providers.registry import NoCredentials, ProviderRegistry, Target
from router.providers.wire import Completion
from router.scoring.agreement import sample_agreement
from router.settings import CascadeRule
from router.types import ClientCall, Dialect, JSONObject

logger = logging.getLogger("router.pipeline.draft")
_LOGPROB_FIELDS = frozenset({"logprobs", "top_logprobs"})


def draft_request(call: ClientCall, target: Target, hub_request: JSONObject,
                  model_info: ModelInfoTable | None = None) -> tuple[JSONObject, bool]:
    """The request for the draft model, and whether it is already in the target's wire format. A chat client on
    a chat draft keeps its own body (unknown fields included) with `max_tokens` capped to what the draft can
    produce; everything else is the hub request adapted to the draft (raises NotServableByDraft). The draft's
    limits: its configured `model_info` first, then the built-in table."""
    model = target.upstream_model
    if target.native and call.dialect is Dialect.OPENAI_CHAT:
        body = dict(call.body)
        limit = capabilities_of(model, model_info).max_output_tokens
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int):
                body[key] = min(body[key], limit)
        return body, True
    return adapt_request(hub_request, model, model_info), False


def draft_logprobs(target: Target, request: JSONObject, model_info: ModelInfoTable | None = None) -> bool:
    """Whether to ask the draft for token log-probs: Chat Completions only, and only when they work for this
    model on a streamed request (drafts always are) and, when the request has tools, with tools (see
    `logprobs_wanted`)."""
    return target.wire.dialect is Dialect.OPENAI_CHAT and logprobs_wanted(
        target.upstream_model, model_info, tools=has_tools(request), stream=True,
        provider_supports=target.provider.settings.supports_logprobs)


class DraftStep:
    """Runs the draft of a cascade rule to completion."""

    def __init__(self, registry: ProviderRegistry, upstream: Upstream,
                 model_info: ModelInfoTable | None = None) -> None:
        """`model_info`: the config's `model_info` section (None: the built-in tables alone)."""
        self._registry = registry
        self._upstream = upstream
        self._model_info = model_info or {}

    def reconfigure(self, model_info: ModelInfoTable) -> None:
        """Adapt new drafts to this `model_info` (a reloaded config)."""
        self._model_info = model_info

    async def run(self, call: ClientCall, rule: CascadeRule, hub_request: JSONObject,
                  progress: Progress | None = None) -> DraftRun:
        """The draft's complete answer, or a failed run saying why (NotServableByDraft is raised). When it is
        cancelled, the draft and its samples are cut (their connections closed) and `progress.plan` gets the cut
        run, priced on what they had used."""
        target = self._registry.resolve(rule.draft_model, call.dialect, buffered=True)
        request, native = draft_request(call, target, hub_request, self._model_info)
        model, provider = target.upstream_model, target.provider.name
        beta_header = call.headers.get("anthropic-beta")
        beta = (adapt_betas(beta_header, model, self._model_info) or "") if beta_header is not None else None
        logprobs = draft_logprobs(target, request, self._model_info)
        if native and not logprobs:  # a chat client's own ask would fail a draft where log-probs do not work
            request = {key: value for key, value in request.items() if key not in _LOGPROB_FIELDS}
        sampled = {**request, "temperature": rule.verify.temperature}
        cut: list[Completion] = []
        started = time.perf_counter()
        try:  # the draft and its extra samples (agreement evidence, when the rule asks for it) run together
            buffered, *extra = await asyncio.gather(*(
                self._upstream.buffer(call, target, body, native=native, timeout_s=rule.draft_timeout_s, beta=beta,
                                      logprobs=logprobs, on_cancel=cut.append)
                for body in [request, *[sampled] * (rule.verify.samples - 1)]))
        except NoCredentials as exc:
            logger.info("draft skipped for %s: %s", call.request_id, exc)
            return DraftRun(model, provider, None, 0.0, f"draft {model} failed: {exc}")
        except asyncio.CancelledError:
            if progress is not None:  # the samples' usage is paid as draft cost, as when they finish
                usage = _total([completion.usage for completion in cut]) if cut else None
                run = DraftRun(model, provider, Completion(None, usage, error="cancelled"),
                               (time.perf_counter() - started) * 1000.0, f"draft {model} cancelled")
                progress.plan = replace(progress.plan, draft=run, draft_status="failed")
            raise
        completion = buffered.completion
        samples_usage = _total([b.completion.usage for b in extra]) if extra else None
        if not completion.complete or completion.message is None:
            failure = f"draft {model} failed: {completion.error}"
            logger.info("draft failed for %s: %s", call.request_id, failure)
            return DraftRun(model, provider, completion, buffered.latency_ms, failure, samples_usage=samples_usage)
        answers = [b.completion.message for b in extra if b.completion.complete and b.completion.message is not None]
        agreement = sample_agreement(hub_request, completion.message, answers) if extra else None
        return DraftRun(model, provider, completion, buffered.latency_ms, agreement=agreement,
                        samples_usage=samples_usage)


def _total(usages: list[TokenUsage | None]) -> TokenUsage:
    total = TokenUsage()
    for usage in usages:
        if usage is not None:
            total = total + usage
    return total
