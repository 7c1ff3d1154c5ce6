"""The one orchestrator: cache → rule → (draft → score → accept or escalate) → remember → count."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from router.bridge import Bridge, to_hub_request
from router.capture import captured, hub_message_from_json
from router.cascade import Cascade, CascadeOutcome
from router.drafting import replay_answer
from router.metrics import Metrics
from router.policy.rules import Control, decide_route, find_rule
from router.providers.registry import ProviderRegistry
from router.settings import CascadeRule
from router.types import Answer, ClientCall, Endpoint, JSONAnswer, JSONObject, StreamAnswer, client_family

if TYPE_CHECKING:
    from router.caching import CacheLayer, CacheProbe

logger = logging.getLogger("router.pipeline")


class Pipeline:
    """Serves every client call: from the cache, pass-through, or through a cascade rule."""

    def __init__(self, registry: ProviderRegistry, bridge: Bridge, rules: list[CascadeRule], cascade: Cascade,
                 metrics: Metrics, cache: CacheLayer | None = None) -> None:
        self._registry = registry
        self._bridge = bridge
        self._rules = rules
        self._cascade = cascade
        self._metrics = metrics
        self._cache = cache
        self._background: set[asyncio.Task[None]] = set()

    async def handle(self, call: ClientCall) -> Answer:
        """Answer one client call in its own dialect."""
        if call.endpoint is Endpoint.COUNT_TOKENS:
            return await self._bridge.forward(call, self._registry.resolve(call.model, client_family(call.dialect)))
        rule = find_rule(self._rules, call.model)
        control = Control.from_headers(call.headers)
        hub_request = to_hub_request(call) if (rule is not None or self._cache is not None) else None
        probe = None
        if self._cache is not None and hub_request is not None and not control.no_cache:
            probe = await self._cache.probe(call, hub_request, rule.cache_threshold if rule else None)
            if probe is not None and probe.hit_message is not None:
                self._metrics.inc("cascadeflow_requests_total", endpoint=call.endpoint.value, route="cache")
                return self._serve_hit(call, probe)
        answer, served_message, route = await self._route(call, rule, control, hub_request)
        self._metrics.inc("cascadeflow_requests_total", endpoint=call.endpoint.value, route=route)
        if probe is not None:
            answer.headers["x-cascadeflow-cache"] = "miss"
            return self._remember(call, answer, probe, served_message)
        return answer

    async def _route(self, call: ClientCall, rule: CascadeRule | None, control: Control,
                     hub_request: JSONObject | None) -> tuple[Answer, JSONObject | None, str]:
        decision = decide_route(rule, control, call.body, call.headers)
        if rule is None or hub_request is None or decision.route == "pass_through":
            target = self._registry.resolve(call.model, client_family(call.dialect))
            return await self._bridge.forward(call, target), None, "pass_through"
        if decision.route == "strong":
            answer, outcome = await self._cascade.strong(call, CascadeOutcome(rule, "strong", decision.reason))
        else:
            answer, outcome = await self._cascade.run(call, rule, control, hub_request)
        if outcome.draft is not None:
            self._metrics.inc("cascadeflow_drafts_total", outcome="accepted" if outcome.accepted else "escalated")
        if outcome.cost is not None:
            self._metrics.inc("cascadeflow_cost_usd_total", outcome.cost.actual_usd, kind="actual")
            self._metrics.inc("cascadeflow_cost_usd_total", outcome.cost.strong_only_usd, kind="original")
        return answer, outcome.answer_message, outcome.route

    def _serve_hit(self, call: ClientCall, probe: CacheProbe) -> Answer:
        assert probe.hit_message is not None
        headers = {"x-cascadeflow-cache": "hit", "x-cascadeflow-similarity": f"{probe.similarity:.4f}",
                   "x-cascadeflow-cache-match": "exact" if probe.exact else "semantic",
                   "x-cascadeflow-actual-cost": "0"}
        return replay_answer(call, probe.hit_message, headers)

    def _remember(self, call: ClientCall, answer: Answer, probe: CacheProbe,
                  served_message: JSONObject | None) -> Answer:
        cache = self._cache
        assert cache is not None
        if answer.status != 200:
            return answer
        if isinstance(answer, JSONAnswer):
            message = served_message or hub_message_from_json(call.dialect, answer.body)
            self._spawn(cache.remember(probe, message, call.model))
            return answer
        if served_message is not None:
            self._spawn(cache.remember(probe, served_message, call.model))
            return answer

        async def on_complete(message: JSONObject | None) -> None:
            self._spawn(cache.remember(probe, message, call.model))

        return StreamAnswer(answer.status, answer.headers, captured(answer.frames, call.dialect, on_complete))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("background cache write failed: %s", task.exception())
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="cache")

    async def drain(self) -> None:
        """Wait for background work (cache writes) at shutdown."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
