"""The one pipeline: cache → rule → predict → draft → verify → serve → record, each step returning a value."""

from __future__ import annotations

from dataclasses import dataclass

from router.errors import ProxyError
from router.observability.context import stage
from router.pipeline.cache import CacheStep
from router.pipeline.draft import DraftStep
from router.pipeline.outcome import Clock, Plan, Request, RequestFeatures
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
        """Answer one client call in its own dialect; a failure is recorded, then raised."""
        clock = Clock()
        try:
            validate_call(call)
            return await self._route(call, clock)
        except ServedFailure as failure:
            self._steps.serve.failed(failure.request, failure.plan, failure.error)
            raise failure.error from None
        except ProxyError as error:
            self._steps.serve.failed(Request(call, clock, None), Plan("failed", "refused before routing"), error)
            raise

    async def _route(self, call: ClientCall, clock: Clock) -> Answer:
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
        request = Request(call, clock, hub)
        if use_cache and cache is not None and hub is not None:
            with stage("cache"):
                request = Request(call, clock, hub, await cache.lookup(call, hub, rule))
            if request.lookup is not None and request.lookup.hit is not None:
                return self._steps.serve.hit(request, Plan("cache", "semantic cache hit", rule), request.lookup.hit)
        if rule is None or hub is None or decision.route == "pass_through":
            with stage("upstream", model=call.model):
                return await self._steps.serve.relay(request, Plan("pass_through", decision.reason), call.model)
        vector = request.lookup.vector if request.lookup is not None else None
        features = RequestFeatures(vector)
        if decision.route == "draft":
            with stage("classify"):
                features = await self._steps.predict.run(hub, vector, rule.verify.profile)
        request = Request(call, clock, hub, request.lookup, features)
        prediction = features.prediction
        if decision.route == "strong":
            plan = Plan("strong", decision.reason, rule, draft_status="skipped")
        elif prediction is not None and prediction.skip and control.force is None:
            reason = f"learned router: P(draft good)={prediction.p_good:.3f} < {prediction.skip_threshold:.3f}"
            plan = Plan("strong", reason, rule, draft_status="skipped")
        else:
            plan = await self._cascade(request, rule, control)
            if plan.route == "draft":
                return self._steps.serve.draft(request, plan)
        with stage("strong", model=rule.strong_model, route=plan.route):
            return await self._steps.serve.relay(request, plan, rule.strong_model)

    async def _cascade(self, request: Request, rule: CascadeRule, control: Control) -> Plan:
        """Draft, then verify: the plan says whether the draft is served or the strong model answers."""
        assert request.hub is not None
        try:
            with stage("draft", model=rule.draft_model):
                draft = await self._steps.draft.run(request.call, rule, request.hub)
        except NotServableByDraft as exc:
            return Plan("strong", str(exc), rule, draft_status="skipped")
        if draft.failure is not None:
            return Plan("escalated", draft.failure, rule, draft, draft_status="failed")
        prediction = request.features.prediction
        with stage("score"):
            verdict = await self._steps.verify.run(draft, request.hub, rule, control,
                                                   prediction.p_good if prediction is not None else None)
        return Plan("draft" if verdict.accepted else "escalated", verdict.reason, rule, draft, verdict,
                    "accepted" if verdict.accepted else "rejected")

    def reconfigure(self, rules: list[CascadeRule]) -> None:
        """Serve new requests by these rules (a reloaded config); requests in flight keep theirs."""
        self._rules = list(rules)

    async def drain(self) -> None:
        """Wait for background work (cache writes, labels, log writes) at shutdown."""
        await self._steps.record.drain()
