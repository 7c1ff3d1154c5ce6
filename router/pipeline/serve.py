"""The serve step: the planned answer to the client (a relayed strong or pass-through answer, a replayed draft
or cached answer), each ending in the request's one Outcome and ledger entry, handed to the record step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import orjson

from router.errors import ProxyError
from router.ledger import Ledger, LedgerEntry
from router.pipeline.fallback import FALLBACK_HEADER, Fallbacks, falls_back
from router.pipeline.outcome import Outcome, Plan, Request
from router.pipeline.record import RecordStep
from router.protocol.hub import from_hub_message, message_frames, usage_of
from router.providers.call import Relayed, Upstream
from router.providers.registry import ProviderRegistry, Target
from router.providers.wire import Completion
from router.types import Answer, ClientCall, JSONAnswer, JSONObject, StreamAnswer

_SSE = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


class ServedFailure(Exception):
    """A failure after the plan was made: the request is recorded with its plan, then the error is raised."""

    def __init__(self, error: ProxyError, request: Request, plan: Plan) -> None:
        super().__init__(error.message)
        self.error = error
        self.request = request
        self.plan = plan


class ServeStep:
    """Answers the client as planned and prices what was spent."""

    def __init__(self, registry: ProviderRegistry, upstream: Upstream, ledger: Ledger, record: RecordStep,
                 fallbacks: Fallbacks | None = None) -> None:
        self._registry = registry
        self._upstream = upstream
        self._ledger = ledger
        self._record = record
        self._fallbacks = fallbacks

    async def relay(self, request: Request, plan: Plan, model: str) -> Answer:
        """The model's answer (or a fallback model's) relayed live; the request is finished when it is whole."""
        relayed, target, plan, answered_by = await self._first_answer(request, plan, model)
        answer = relayed.answer
        answer.headers.update(plan.headers())
        if answered_by != model:
            answer.headers[FALLBACK_HEADER] = answered_by
        if request.lookup is not None:
            answer.headers["x-cascadeflow-cache"] = "miss"
        if relayed.completion is not None:
            outcome = self._relayed(request, plan, target, relayed.completion)
            if plan.rule is not None:
                answer.headers.update(outcome.ledger.headers())
        elif self._wasted(plan).wasted_draft is not None:  # a stream's own cost is known at its end; the draft's now
            answer.headers["x-cascadeflow-draft-cost-wasted"] = f"{self._wasted(plan).wasted_usd:.8f}"
        if request.features.prediction is not None:
            answer.headers["x-cascadeflow-predicted-good"] = f"{request.features.prediction.p_good:.4f}"
        return answer

    async def _first_answer(self, request: Request, plan: Plan, model: str) -> tuple[Relayed, Target, Plan, str]:
        """The answer of the model, else of the first of its fallbacks that begins one (priced as the model that
        answered); when none does, the client hears the first model's error."""
        call = request.call
        models = self._fallbacks.models(model, plan.rule) if self._fallbacks is not None else [model]
        first: ProxyError | None = None
        for number, name in enumerate(models):
            try:
                target = self._registry.resolve(name, call.dialect)
                needs_message = self._record.needs_message(plan, request.lookup)
                relayed = await self._upstream.relay(call, target, needs_message=needs_message,
                                                     on_done=partial(self._relayed, request, plan, target))
                return relayed, target, plan, name
            except ProxyError as error:
                first = first or error
                if self._fallbacks is None or number + 1 == len(models) or not falls_back(error):
                    break
                plan = self._fallbacks.handed_over(plan, name, error, models[number + 1], call.request_id)
        assert first is not None
        raise ServedFailure(first, request, plan) from first

    def _wasted(self, plan: Plan) -> LedgerEntry:
        """The draft's spend when it was not served (rejected, or failed after usage arrived)."""
        draft = plan.draft
        if draft is None or plan.draft_status == "accepted":
            return LedgerEntry()
        return LedgerEntry(wasted_draft=self._ledger.charge(draft.model, draft.usage, draft.provider))

    def _relayed(self, request: Request, plan: Plan, target: Target, completion: Completion) -> Outcome:
        """The outcome of a relayed answer (JSON now, a stream at its end or when the client hung up)."""
        served = self._ledger.charge(target.upstream_model, completion.usage, target.provider.name)
        entry = LedgerEntry(served, self._wasted(plan).wasted_draft, served.usd if served is not None else None,
                            target.upstream_model)
        outcome = Outcome(request.call, request.clock, plan, request.hub, request.features, entry, completion,
                          error=completion.error, latency_ms=request.clock.elapsed_ms())
        self._record.finish(outcome, request.lookup)
        return outcome

    def draft(self, request: Request, plan: Plan) -> Answer:
        """An accepted draft, replayed as one clean answer; strong-only is the strong model on the draft's tokens."""
        draft, rule = plan.draft, plan.rule
        assert draft is not None and draft.completion is not None and draft.completion.message is not None
        assert rule is not None
        served = self._ledger.charge(draft.model, draft.usage, draft.provider)  # its extra samples included
        strong = self._registry.resolve(rule.strong_model, request.call.dialect)
        estimate = self._ledger.charge(strong.upstream_model, draft.completion.usage, strong.provider.name)
        entry = LedgerEntry(served, None, estimate.usd if estimate is not None else None, strong.upstream_model)
        outcome = Outcome(request.call, request.clock, plan, request.hub, request.features, entry, draft.completion,
                          latency_ms=request.clock.elapsed_ms())
        self._record.finish(outcome, request.lookup)
        headers = {**plan.headers(), **entry.headers()}
        if request.lookup is not None:
            headers["x-cascadeflow-cache"] = "miss"
        if request.features.prediction is not None:
            headers["x-cascadeflow-predicted-good"] = f"{request.features.prediction.p_good:.4f}"
        return replay(request.call, draft.completion.message, headers)

    def hit(self, request: Request, plan: Plan, message: JSONObject) -> Answer:
        """A cached answer: nothing spent; strong-only is what the requested tier would have cost."""
        lookup = request.lookup
        assert lookup is not None
        model = plan.rule.strong_model if plan.rule is not None else request.call.model
        usage = usage_of(message)
        try:
            target = self._registry.resolve(model, request.call.dialect)
            estimate = self._ledger.charge(target.upstream_model, usage, target.provider.name)
        except ProxyError:
            estimate = None
        entry = LedgerEntry(None, None, estimate.usd if estimate is not None else None,
                            estimate.model if estimate is not None else None)
        outcome = Outcome(request.call, request.clock, plan, request.hub, request.features, entry,
                          Completion(message, usage), cache_hit=True, latency_ms=request.clock.elapsed_ms())
        self._record.finish(outcome, lookup)
        headers = {"x-cascadeflow-cache": "hit", "x-cascadeflow-similarity": f"{lookup.similarity:.4f}",
                   "x-cascadeflow-cache-match": "exact" if lookup.exact else "semantic", **entry.headers()}
        return replay(request.call, message, headers)

    def failed(self, request: Request, plan: Plan, error: ProxyError) -> None:
        """A request that ends in an error: counted and recorded, with a draft it had already paid for."""
        failed = Plan("failed", plan.reason, plan.rule, plan.draft, plan.verdict, plan.draft_status)
        outcome = Outcome(request.call, request.clock, failed, request.hub, request.features, self._wasted(plan),
                          None, status=error.status_code, error=error.message,
                          latency_ms=request.clock.elapsed_ms())
        self._record.finish(outcome)


def replay(call: ClientCall, message: JSONObject, headers: dict[str, str]) -> Answer:
    """A complete hub message as one clean answer in the client's dialect, streamed if the client streams."""
    if not call.stream:
        body = orjson.dumps(from_hub_message(call, message))
        return JSONAnswer(200, {"content-type": "application/json", **headers}, body)
    frames = message_frames(call, message)

    async def replayed() -> AsyncIterator[bytes]:
        for frame in frames:
            yield frame

    return StreamAnswer(200, {**_SSE, **headers}, replayed())
