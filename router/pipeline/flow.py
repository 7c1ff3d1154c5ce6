"""The one pipeline: cache → rule → predict → draft → verify → serve → record, each step returning a value.

A request cancelled before its answer began (its client hung up: router/api/disconnect.py; or the server's grace
period ran out) is recorded like a failure, with what it had spent until then (a cut draft and its samples priced on
the usage they had reported), before the cancellation goes on. Recording is synchronous and nothing awaits between
it and the answer's return, so a request is recorded once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from router.errors import ClientDisconnectedError, ProxyError
from router.model_settings import ModelInfoTable
from router.observability.context import stage
from router.pipeline.cache import CacheStep
from router.pipeline.draft import DraftStep
from router.pipeline.outcome import Clock, Plan, Progress, Request, RequestFeatures
from router.pipeline.predict import PredictStep
from router.pipeline.record import RecordStep
from router.pipeline.serve import ServedFailure, ServeStep
from router.pipeline.verify import VerifyStep
from router.policy.capabilities import NotServableByDraft
from router.policy.rules import Control, decide_route
from router.protocol.hub import to_hub_request
from router.protocol.validation import validate_call
from router.providers.call import Upstream
from router.providers.registry import ProviderRegistry
from router.settings import CascadeRule
from router.types import Answer, ClientCall, Endpoint

logger = logging.getLogger("router.pipeline")

@dataclass(frozen=True)
class Steps:
    """The pipeline's steps; the cache is None unless some rule (or the whole proxy) opted in."""

    cache: CacheStep | None
    predict: PredictStep
    draft: DraftStep
    verify: VerifyStep
    serve: ServeStep
    record: RecordStep


class Pipeline:
    """Serves every client call: from the cache, pass-through, or through a cascade rule."""

    def __init__(self, registry: ProviderRegistry, upstream: Upstream, rules: list[CascadeRule], steps: Steps) -> None:
        self._registry = registry
        self._upstream = upstream
        self._rules = rules
        self._steps = steps

    async def handle(self, call: ClientCall) -> Answer:
        """Answer one client call in its own dialect; a failure is recorded, then raised (so is a cancellation)."""
        clock = Clock()
        progress = Progress(Request(call, clock, None), Plan("failed", "cancelled before routing"))
        record = self._steps.record
        try:
            validate_call(call)
            answer = await self._route(call, clock, progress)
        except ServedFailure as failure:
            self._steps.serve.failed(failure.request, failure.plan, failure.error)
            if record.syncs:
                await record.durable()
            raise failure.error from None
        except ProxyError as error:
            self._steps.serve.failed(Request(call, clock, None), Plan("failed", "refused before routing"), error)
            if record.syncs:
                await record.durable()
            raise
        except asyncio.CancelledError as cancelled:
            if call.endpoint is not Endpoint.COUNT_TOKENS:  # a token count bills nothing: counted, never recorded
                self._abandoned(progress, cancelled)
            raise
        return await record.durable_answer(answer) if record.syncs else answer

    def _abandoned(self, progress: Progress, cancelled: asyncio.CancelledError) -> None:
        """Record a request cancelled before its answer began, with what it had spent (never raises)."""
        why = cancelled.args[0] if cancelled.args and isinstance(cancelled.args[0], str) else "cancelled"
        try:
            self._steps.serve.failed(progress.request, progress.plan,
                                     ClientDisconnectedError(f"{why} during the {progress.stage}"))
        except Exception:  # the cancellation must go on whatever happens to its record
            logger.exception("recording the cancelled request %s failed", progress.request.call.request_id)

    async def _route(self, call: ClientCall, clock: Clock, progress: Progress) -> Answer:
        """The rule step (with the cache before it when the rule uses one), then the plan, then serve."""
        decision = decide_route(self._rules, call.model, call.body, call.headers)
        rule, control = decision.rule, decision.control
        if call.endpoint is Endpoint.COUNT_TOKENS:  # an alias counts on the model that would answer
            model = rule.strong_model if rule is not None else call.model
            with stage("upstream", model=model):
                answer = await self._upstream.count_tokens(call, self._registry.resolve(model, call.dialect))
            self._steps.record.count(call, "pass_through")  # nothing billed: counted, not recorded
            return answer
        cache = self._steps.cache
        use_cache = cache is not None and control.force is None and not control.no_cache and cache.wanted(rule)
        hub = to_hub_request(call) if rule is not None or use_cache else None
        request = progress.request = Request(call, clock, hub)
        progress.plan = Plan("failed", decision.reason, rule)
        if use_cache and cache is not None and hub is not None:
            progress.stage = "cache lookup"
            with stage("cache"):
                request = progress.request = Request(call, clock, hub, await cache.lookup(call, hub, rule))
            if request.lookup is not None and request.lookup.hit is not None:
                return self._steps.serve.hit(request, Plan("cache", "semantic cache hit", rule), request.lookup.hit)
        if rule is None or hub is None or decision.route == "pass_through":
            progress.plan, progress.stage = Plan("pass_through", decision.reason), "upstream call"
            with stage("upstream", model=call.model):
                return await self._steps.serve.relay(request, progress.plan, call.model)
        vector = request.lookup.vector if request.lookup is not None else None
        features = RequestFeatures(vector)
        if decision.route == "draft":
            progress.stage = "classification"
            with stage("classify"):
                features = await self._steps.predict.run(hub, vector, rule.verify.profile)
        request = progress.request = Request(call, clock, hub, request.lookup, features)
        prediction = features.prediction
        if decision.route == "strong":
            plan = Plan("strong", decision.reason, rule, draft_status="skipped")
        elif prediction is not None and prediction.skip and control.force is None:
            reason = f"learned router: P(draft good)={prediction.p_good:.3f} < {prediction.skip_threshold:.3f}"
            plan = Plan("strong", reason, rule, draft_status="skipped")
        else:
            plan = await self._cascade(request, rule, control, progress)
            if plan.route == "draft":
                return self._steps.serve.draft(request, plan)
        progress.plan, progress.stage = plan, "strong call"
        with stage("strong", model=rule.strong_model, route=plan.route):
            return await self._steps.serve.relay(request, plan, rule.strong_model)

    async def _cascade(self, request: Request, rule: CascadeRule, control: Control, progress: Progress) -> Plan:
        """Draft, then verify: the plan says whether the draft is served or the strong model answers."""
        assert request.hub is not None
        progress.plan, progress.stage = Plan("escalated", f"draft {rule.draft_model} cut short", rule), "draft"
        try:
            with stage("draft", model=rule.draft_model):
                draft = await self._steps.draft.run(request.call, rule, request.hub, progress)
        except NotServableByDraft as exc:
            return Plan("strong", str(exc), rule, draft_status="skipped")
        if draft.failure is not None:
            return Plan("escalated", draft.failure, rule, draft, draft_status="failed")
        prediction = request.features.prediction
        progress.plan, progress.stage = Plan("escalated", "the draft was not judged", rule, draft), "verification"
        with stage("score"):
            verdict = await self._steps.verify.run(draft, request.hub, rule, control,
                                                   prediction.p_good if prediction is not None else None)
        return Plan("draft" if verdict.accepted else "escalated", verdict.reason, rule, draft, verdict,
                    "accepted" if verdict.accepted else "rejected")

    def may_draft(self, call: ClientCall) -> bool:
        """Whether a call may wait for a draft before its answer begins (its rule drafts unless told otherwise)."""
        return call.endpoint is not Endpoint.COUNT_TOKENS and decide_route(
            self._rules, call.model, call.body, call.headers).route == "draft"

    def reconfigure(self, rules: list[CascadeRule], model_info: ModelInfoTable | None = None, *,
                    spend_client_keys: bool | None = None) -> None:
        """Serve new requests by these rules, and when given this `model_info` and background-key policy (a reloaded
        config); requests in flight keep theirs."""
        self._rules = list(rules)
        if model_info is not None:
            self._steps.draft.reconfigure(model_info)
        if spend_client_keys is not None:
            self._upstream.reconfigure(spend_client_keys=spend_client_keys)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for background work (cache writes, labels, log writes) at shutdown; with `timeout_s`, what is
        still running after it is cancelled."""
        await self._steps.record.drain(timeout_s)
