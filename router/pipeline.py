"""The one orchestrator: cache → rule → prediction → (draft → score → accept or escalate) → remember → log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router.background import BackgroundTasks
from router.bridge import Bridge, to_hub_request
from router.capture import captured, hub_message_from_json
from router.cascade import Cascade, CascadeOutcome, usage_of
from router.drafting import replay_answer
from router.embedding.text import embedding_text
from router.metrics import Metrics
from router.policy.features import structural_vector
from router.policy.rules import Control, decide_route, find_rule
from router.providers.registry import ProviderRegistry
from router.settings import CascadeRule
from router.types import Answer, ClientCall, Endpoint, JSONAnswer, JSONObject, StreamAnswer, client_family

if TYPE_CHECKING:
    from router.caching import CacheLayer, CacheProbe
    from router.embedding.encoder import Encoder
    from router.learned import LearnedRouter, Prediction
    from router.outcomes import OutcomeRecorder, RequestTrace

OnMessage = Callable[[JSONObject | None], None]

logger = logging.getLogger("router.pipeline")


@dataclass(frozen=True)
class PipelineParts:
    """The optional stages: semantic cache, learned router (with the encoder it needs), outcome log."""

    cache: CacheLayer | None = None
    learned: LearnedRouter | None = None
    encoder: Encoder | None = None
    recorder: OutcomeRecorder | None = None


class Pipeline:
    """Serves every client call: from the cache, pass-through, or through a cascade rule."""

    def __init__(self, registry: ProviderRegistry, bridge: Bridge, rules: list[CascadeRule], cascade: Cascade,
                 metrics: Metrics, parts: PipelineParts | None = None) -> None:
        parts = parts or PipelineParts()
        self._registry = registry
        self._bridge = bridge
        self._rules = rules
        self._cascade = cascade
        self._metrics = metrics
        self._cache = parts.cache
        self._learned = parts.learned
        self._encoder = parts.encoder
        self._recorder = parts.recorder
        self._background = BackgroundTasks(metrics, "cache", logger)

    async def handle(self, call: ClientCall) -> Answer:
        """Answer one client call in its own dialect."""
        if call.endpoint is Endpoint.COUNT_TOKENS:
            return await self._bridge.forward(call, self._registry.resolve(call.model, client_family(call.dialect)))
        rule = find_rule(self._rules, call.model)
        control = Control.from_headers(call.headers)
        hub_request = to_hub_request(call) if (rule is not None or self._cache is not None) else None
        trace = self._trace(call, hub_request)
        probe = None
        if self._cache is not None and hub_request is not None and not control.no_cache:
            probe = await self._cache.probe(call, hub_request, rule.cache_threshold if rule else None)
            if trace is not None and probe is not None:
                trace.vector = probe.vector
            if probe is not None and probe.hit_message is not None:
                self._metrics.inc("cascadeflow_requests_total", endpoint=call.endpoint.value, route="cache")
                if trace is not None:
                    trace.cache_hit, trace.route, trace.reason = True, "cache", "semantic cache hit"
                    self._record(trace, probe.hit_message)
                return self._serve_hit(call, probe)
        answer, served_message, route = await self._route(call, rule, control, hub_request, trace)
        self._metrics.inc("cascadeflow_requests_total", endpoint=call.endpoint.value, route=route)
        listeners: list[OnMessage] = []
        if probe is not None:
            answer.headers["x-cascadeflow-cache"] = "miss"
            if answer.status == 200:
                listeners.append(self._rememberer(probe, call.model))
        if trace is not None:
            if not listeners and isinstance(answer, JSONAnswer) and self._recorder is not None \
                    and not self._recorder.needs_message(trace):  # usage is all the record needs
                trace.usage = usage_of(call.dialect, answer)
                self._record(trace, None)
                return answer
            listeners.append(lambda message: self._record(trace, message))
        return self._when_complete(call, answer, served_message, listeners)

    def _trace(self, call: ClientCall, hub_request: JSONObject | None) -> RequestTrace | None:
        if self._recorder is None:
            return None
        from router.outcomes import RequestTrace

        return RequestTrace(call, hub_request)

    async def _route(self, call: ClientCall, rule: CascadeRule | None, control: Control, hub_request: JSONObject | None,
                     trace: RequestTrace | None) -> tuple[Answer, JSONObject | None, str]:
        decision = decide_route(rule, control, call.body, call.headers)
        if rule is None or hub_request is None or decision.route == "pass_through":
            target = self._registry.resolve(call.model, client_family(call.dialect))
            return await self._bridge.forward(call, target), None, "pass_through"
        prediction = None
        if decision.route == "draft":
            prediction = await self._predict(hub_request, trace)
        if decision.route == "strong":
            answer, outcome = await self._cascade.strong(call, CascadeOutcome(rule, "strong", decision.reason))
        elif prediction is not None and prediction.skip and control.force is None:
            reason = f"learned router: P(draft good)={prediction.p_good:.3f} < {prediction.skip_threshold:.3f}"
            answer, outcome = await self._cascade.strong(call, CascadeOutcome(rule, "strong", reason))
        else:
            predicted = prediction.p_good if prediction is not None else None
            answer, outcome = await self._cascade.run(call, rule, control, hub_request, predicted)
        if prediction is not None:
            answer.headers["x-cascadeflow-predicted-good"] = f"{prediction.p_good:.4f}"
        if trace is not None:
            trace.outcome, trace.route, trace.reason = outcome, outcome.route, outcome.reason
        if outcome.draft is not None:
            self._metrics.inc("cascadeflow_drafts_total", outcome="accepted" if outcome.accepted else "escalated")
        if outcome.cost is not None:
            self._metrics.inc("cascadeflow_cost_usd_total", outcome.cost.actual_usd, kind="actual")
            self._metrics.inc("cascadeflow_cost_usd_total", outcome.cost.strong_only_usd, kind="original")
        return answer, outcome.answer_message, outcome.route

    async def _predict(self, hub_request: JSONObject, trace: RequestTrace | None) -> Prediction | None:
        """The learned router's prediction, on the cache's vector when there is one. Without an artifact the
        vector and features are still computed when the outcome log is on, so a new deployment can learn."""
        predicting = self._learned is not None and self._learned.artifact is not None
        if not predicting and trace is None:
            return None
        vector = trace.vector if trace is not None else None
        if vector is None and self._encoder is not None:
            try:
                vector = await self._encoder.embed(embedding_text(hub_request))
            except Exception:  # an encoder failure degrades to the plain cascade
                logger.exception("embedding for the learned router failed; drafting first")
                self._metrics.inc("cascadeflow_dependency_errors_total", dependency="encoder")
                return None
        if vector is None:
            return None
        prediction = await self._learned.predict(vector, hub_request) if self._learned is not None else None
        if trace is not None:  # the features are computed once, off the loop: by the prediction when there is one
            trace.vector, trace.prediction = vector, prediction
            trace.structural = prediction.structural if prediction is not None else tuple(
                float(v) for v in await asyncio.to_thread(structural_vector, hub_request))
        return prediction

    def _serve_hit(self, call: ClientCall, probe: CacheProbe) -> Answer:
        assert probe.hit_message is not None
        headers = {"x-cascadeflow-cache": "hit", "x-cascadeflow-similarity": f"{probe.similarity:.4f}",
                   "x-cascadeflow-cache-match": "exact" if probe.exact else "semantic",
                   "x-cascadeflow-actual-cost": "0"}
        return replay_answer(call, probe.hit_message, headers)

    def _rememberer(self, probe: CacheProbe, model: str) -> OnMessage:
        cache = self._cache
        assert cache is not None
        return lambda message: self._background.spawn(cache.remember(probe, message, model))

    def _record(self, trace: RequestTrace, message: JSONObject | None) -> None:
        assert self._recorder is not None
        try:
            self._recorder.complete(trace, message)
        except Exception:  # the log must never fail a request
            logger.exception("recording the outcome failed")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="outcome_log")

    def _when_complete(self, call: ClientCall, answer: Answer, served_message: JSONObject | None,
                       listeners: list[OnMessage]) -> Answer:
        """Hand the complete answer (hub format) to each listener: now for JSON, at the end for streams."""
        if not listeners:
            return answer
        if isinstance(answer, JSONAnswer) or served_message is not None:
            message = served_message
            if message is None and isinstance(answer, JSONAnswer) and answer.status == 200:
                message = hub_message_from_json(call.dialect, answer.body)
            for listener in listeners:
                listener(message)
            return answer

        async def on_complete(message: JSONObject | None) -> None:
            for listener in listeners:
                listener(message)

        return StreamAnswer(answer.status, answer.headers, captured(answer.frames, call.dialect, on_complete))

    async def drain(self) -> None:
        """Wait for background work (cache writes, labels, log writes) at shutdown."""
        await self._background.drain()
        if self._recorder is not None:
            await self._recorder.drain()
