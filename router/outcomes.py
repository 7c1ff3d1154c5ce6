"""One outcome record per request: what the pipeline decided and what it cost, written off the request path.

The pipeline fills a `RequestTrace` on the way (cache, prediction, cascade outcome) and calls `complete` once the
answer is whole (at once for JSON, at the end of the stream for streams). Prompts and answers are stored only
when `outcome_log.store_text` is set; a hash of the prompt always is.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from router.cascade import CascadeOutcome
from router.costs import PriceBook, TokenUsage
from router.embedding.text import embedding_text
from router.metrics import Metrics
from router.policy.features import FEATURES_VERSION
from router.scoring.extract import answer_text
from router.settings import OutcomeLogSettings
from router.types import ClientCall, JSONObject

if TYPE_CHECKING:
    from router.labeling import Labeler
    from router.learned import Prediction
    from router.storage import OutcomeLog
    from router.storage.records import OutcomeRecord

logger = logging.getLogger("router.outcomes")


@dataclass
class RequestTrace:
    """What the pipeline learned about one request on its way through."""

    call: ClientCall
    hub_request: JSONObject | None
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
    vector: NDArray[np.float32] | None = None
    structural: tuple[float, ...] | None = None
    prediction: Prediction | None = None
    usage: TokenUsage | None = None
    cache_hit: bool = False
    route: str = "pass_through"
    reason: str = ""
    outcome: CascadeOutcome | None = None


def _usage(message: JSONObject | None) -> TokenUsage | None:
    usage = (message or {}).get("usage")
    return TokenUsage.from_anthropic(usage) if isinstance(usage, dict) else None


class OutcomeRecorder:
    """Builds each request's record, queues it on the log, and hands labelled cases to the labeler."""

    def __init__(self, log: OutcomeLog, settings: OutcomeLogSettings, metrics: Metrics, prices: PriceBook,
                 labeler: Labeler | None = None) -> None:
        self._log = log
        self._settings = settings
        self._metrics = metrics
        self._prices = prices
        self._labeler = labeler

    @property
    def log(self) -> OutcomeLog:
        """The outcome log written to."""
        return self._log

    def needs_message(self, trace: RequestTrace) -> bool:
        """Whether recording this request needs the whole answer (text stored, or a label to judge)."""
        return self._settings.store_text or trace.outcome is not None

    def complete(self, trace: RequestTrace, message: JSONObject | None) -> None:
        """Record a finished request (message: the served answer in the hub format, None if unknown)."""
        try:
            record = self.record_of(trace, message)
        except Exception:  # a malformed answer must not lose the request's existence
            logger.exception("building the outcome record failed")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="outcome_log")
            return
        queued = self._log.submit(record)
        self._metrics.inc("cascadeflow_outcomes_total", result="queued" if queued else "dropped")
        if queued and message is not None:
            self._label(trace, message)

    def _label(self, trace: RequestTrace, message: JSONObject) -> None:
        outcome, labeler = trace.outcome, self._labeler
        if outcome is None or labeler is None or trace.hub_request is None:
            return
        request_id, call, rule = trace.call.request_id, trace.call, outcome.rule
        if outcome.route == "escalated" and outcome.draft is not None:
            labeler.escalated(request_id, call, rule, trace.hub_request, outcome.draft.message, message)
        elif outcome.route == "draft" and outcome.accepted:
            labeler.explore(request_id, call, rule, trace.hub_request, message, "draft")
        elif outcome.route == "strong" and trace.prediction is not None and trace.prediction.skip:
            labeler.explore(request_id, call, rule, trace.hub_request, message, "strong")

    def record_of(self, trace: RequestTrace, message: JSONObject | None) -> OutcomeRecord:
        """The outcome record of a finished request."""
        from router.storage.records import OutcomeRecord

        call, outcome, prediction = trace.call, trace.outcome, trace.prediction
        prompt = embedding_text(trace.hub_request) if trace.hub_request is not None else ""
        served_usage = _usage(message) or trace.usage
        draft = outcome.draft if outcome is not None else None
        cost_usd, strong_only = None, None
        if outcome is not None and outcome.cost is not None:
            cost_usd, strong_only = outcome.cost.actual_usd, outcome.cost.strong_only_usd
        elif served_usage is not None and not trace.cache_hit:
            priced = self._prices.cost(call.model, served_usage)
            cost_usd = priced.usd if priced.known else None
        elif trace.cache_hit:
            cost_usd = 0.0
        latency_ms = (time.perf_counter() - trace.started) * 1000.0
        store_text, vector = self._settings.store_text, trace.vector
        return OutcomeRecord(
            request_id=call.request_id, created_at=trace.created_at, tenant=call.principal.tenant,
            endpoint=call.endpoint.value, requested_model=call.model, route=trace.route, reason=trace.reason,
            draft_model=outcome.rule.draft_model if outcome else None,
            strong_model=outcome.rule.strong_model if outcome else None, cache_hit=trace.cache_hit,
            prediction=prediction.p_good if prediction else None,
            skip_threshold=prediction.skip_threshold if prediction else None,
            artifact_version=prediction.artifact_version if prediction else None,
            features_version=FEATURES_VERSION if trace.structural is not None else None,
            features=trace.structural,
            embedding=vector.astype(np.float32).tobytes() if vector is not None and self._settings.store_embeddings
            else None,
            confidence=outcome.score.value if outcome and outcome.score else None,
            components={c.name: c.value for c in outcome.score.components} if outcome and outcome.score else {},
            accepted=outcome.accepted if outcome and draft else None,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
            prompt_text=prompt if store_text else None,
            draft_text=answer_text(draft.message) if store_text and draft else None,
            strong_text=answer_text(message) if store_text and message and not (outcome and outcome.accepted)
            else None,
            input_tokens=served_usage.input_tokens if served_usage else None,
            output_tokens=served_usage.output_tokens if served_usage else None,
            draft_input_tokens=draft.usage.input_tokens if draft else None,
            draft_output_tokens=draft.usage.output_tokens if draft else None,
            cost_usd=cost_usd, strong_only_cost_usd=strong_only, latency_ms=latency_ms,
            draft_latency_ms=draft.latency_ms if draft else None,
            strong_latency_ms=latency_ms - (draft.latency_ms if draft else 0.0)
            if outcome and not outcome.accepted else None,
        )

    async def drain(self) -> None:
        """Wait for labels in flight, then make every queued record durable."""
        if self._labeler is not None:
            await self._labeler.drain()
        await self._log.flush()
