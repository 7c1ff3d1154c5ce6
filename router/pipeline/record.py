"""The record step: every finished request, failed or not, is counted, posted to the ledger and logged.

It reads the request's one immutable `Outcome` when the answer is whole (at once for JSON, at the end of a
stream, or when the client hung up), then: counts it, posts its ledger entry, remembers a cacheable answer,
queues its outcome record (prompts and answers only with `outcome_log.store_text`; a hash of the prompt
always, and a judged draft's verifier feature row, numbers only) and hands labelled cases to the labeler.
Nothing here may fail a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING

import numpy as np

from router.auth_keys.admission import settle_usage
from router.background import BackgroundTasks
from router.embedding.text import embedding_text
from router.learning_settings import OutcomeLogSettings
from router.ledger import Ledger
from router.metrics import Metrics
from router.observability.context import note_call, note_outcome
from router.pipeline.durable import Wait, all_synced, synced_answer
from router.pipeline.outcome import Outcome, Plan
from router.policy.features import FEATURES_VERSION
from router.scoring.evidence import VERIFIER_FEATURES_VERSION
from router.scoring.extract import answer_text
from router.types import Answer, ClientCall

if TYPE_CHECKING:
    from router.labeling import Labeler
    from router.pipeline.cache import CacheLookup, CacheStep
    from router.spend.ledger import SpendLedger
    from router.storage import OutcomeLog
    from router.storage.records import OutcomeRecord

logger = logging.getLogger("router.pipeline.record")


class OutcomeRecorder:
    """Builds each request's outcome record, queues it on the log, and hands labelled cases to the labeler."""

    def __init__(self, log: OutcomeLog, settings: OutcomeLogSettings, metrics: Metrics,
                 labeler: Labeler | None = None) -> None:
        self.log = log
        self._settings = settings
        self._metrics = metrics
        self._labeler = labeler

    @property
    def labeler(self) -> Labeler | None:
        """The labeler of live traffic (with cascade rules at start)."""
        return self._labeler

    def needs_message(self, plan: Plan) -> bool:
        """Whether recording needs the whole answer (text stored, or a label to judge)."""
        return self._settings.store_text or (plan.rule is not None and self._labeler is not None)

    @property
    def syncs(self) -> bool:
        """Whether the log's journal fsyncs (answers then wait for it)."""
        return self._settings.journal and self._settings.journal_fsync

    def submit(self, outcome: Outcome) -> None:
        """Queue the record of a finished request, then label it when it can be."""
        queued = self.log.submit(record_of(outcome, self._settings))
        self._metrics.inc("cascadeflow_outcomes_total", result="queued" if queued else "dropped")
        if queued and outcome.served is not None and outcome.served.message is not None:
            self._label(outcome)

    def _label(self, outcome: Outcome) -> None:
        plan, labeler, hub = outcome.plan, self._labeler, outcome.hub_request
        served = outcome.served.message if outcome.served is not None else None
        if plan.rule is None or labeler is None or hub is None or served is None:
            return
        call, rule = outcome.call, plan.rule
        draft = plan.draft.completion.message if plan.draft and plan.draft.completion else None
        prediction = outcome.features.prediction
        if plan.draft_status == "rejected" and draft is not None:
            labeler.escalated(call.request_id, call, rule, hub, draft, served)
        elif plan.draft_status == "accepted":
            labeler.explore(call.request_id, call, rule, hub, served, "draft")
        elif plan.route == "strong" and prediction is not None and prediction.skip:
            labeler.explore(call.request_id, call, rule, hub, served, "strong")

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for labels in flight (for at most `timeout_s`, then they are cancelled), then write what is queued."""
        if self._labeler is not None:
            await self._labeler.drain(timeout_s)
        await self.log.flush()


class RecordStep:
    """Counts, posts and logs finished requests."""

    def __init__(self, ledger: Ledger, metrics: Metrics, recorder: OutcomeRecorder | None,
                 cache: CacheStep | None, *, spend: SpendLedger | None = None) -> None:
        self._ledger = ledger
        self._spend = spend
        self._metrics = metrics
        self._recorder = recorder
        self._cache = cache
        self._background = BackgroundTasks(metrics, "cache", logger)
        self._syncs: list[Wait] = []
        if recorder is not None and recorder.syncs:
            self._syncs.append(recorder.log.durable)
        if spend is not None and spend.syncs:
            self._syncs.append(spend.durable)

    @property
    def syncs(self) -> bool:
        """Whether answers wait for a journal's group fsync (`journal_fsync`) before they complete."""
        return bool(self._syncs)

    async def durable(self) -> None:
        """Return once the records written so far are on disk (with `journal_fsync`; at once otherwise)."""
        await all_synced(self._syncs)

    async def durable_answer(self, answer: Answer) -> Answer:
        """The answer, completing only once the request's records are on disk (see router/pipeline/durable.py)."""
        return await synced_answer(answer, self.durable)

    def needs_message(self, plan: Plan, lookup: CacheLookup | None) -> bool:
        """Whether the answer's whole message must be decoded (to cache, store or label it)."""
        return lookup is not None or (self._recorder is not None and self._recorder.needs_message(plan))

    def count(self, call: ClientCall, route: str) -> None:
        """Count a request that bills nothing (a token count)."""
        note_call(call, route)
        self._metrics.inc("cascadeflow_requests_total", endpoint=call.endpoint.value, route=route,
                          dialect=call.dialect.value, status="200")

    def finish(self, outcome: Outcome, lookup: CacheLookup | None = None) -> None:
        """Everything that follows a finished request; never raises."""
        note_outcome(outcome)  # for the request's log line and span
        try:
            self._finish(outcome, lookup)
        except Exception:  # the books must never fail a request
            logger.exception("recording the outcome of %s failed", outcome.call.request_id)
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="outcome_log")

    def _finish(self, outcome: Outcome, lookup: CacheLookup | None) -> None:
        plan, call, status = outcome.plan, outcome.call, str(outcome.status)
        self._metrics.inc("cascadeflow_requests_total", endpoint=call.endpoint.value, route=plan.route,
                          dialect=call.dialect.value, status=status)
        self._metrics.observe("cascadeflow_request_duration_seconds", outcome.latency_ms / 1000.0, route=plan.route,
                              endpoint=call.endpoint.value, dialect=call.dialect.value, status=status)
        if plan.draft is not None and plan.draft_status is not None:
            self._metrics.inc("cascadeflow_drafts_total", outcome=plan.draft_status)
            self._metrics.observe("cascadeflow_draft_duration_seconds", plan.draft.latency_ms / 1000.0,
                                  model=plan.draft.model, outcome=plan.draft_status)
        if plan.rule is not None and plan.route in ("escalated", "strong"):  # the strong call: all after the draft
            strong_ms = outcome.latency_ms - (plan.draft.latency_ms if plan.draft is not None else 0.0)
            self._metrics.observe("cascadeflow_strong_duration_seconds", strong_ms / 1000.0,
                                  model=plan.rule.strong_model, route=plan.route)
        self._ledger.post(outcome.ledger)
        settle_usage(outcome.call.principal, outcome.ledger)  # a keyed request's tokens per minute and budgets
        if self._spend is not None:
            self._spend.post(outcome)
        served = outcome.served.message if outcome.served is not None and outcome.served.complete else None
        if lookup is not None and self._cache is not None and served is not None and not outcome.cache_hit:
            self._background.spawn(self._cache.remember(lookup, served, outcome.call.model))
        if self._recorder is not None:
            self._recorder.submit(outcome)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for background work (cache writes, labels, log writes) at shutdown; with `timeout_s`, cache writes
        and labels still running after it are cancelled (nobody waits for them; what they spent is posted)."""
        await asyncio.gather(self._background.drain(timeout_s),
                             self._recorder.drain(timeout_s) if self._recorder is not None else asyncio.sleep(0))


def _reason(outcome: Outcome) -> str:
    """Why the request went where it went, and how it ended when it did not end well."""
    reason = outcome.plan.reason
    if outcome.error is None:
        return reason
    if outcome.status >= 400:
        return f"{reason}; failed with HTTP {outcome.status}: {outcome.error}"
    return f"{reason}; failed after the answer began: {outcome.error}"


def record_of(outcome: Outcome, settings: OutcomeLogSettings) -> OutcomeRecord:
    """The outcome record of a finished request."""
    from router.storage.records import OutcomeRecord, new_record_id

    call, plan, features, ledger = outcome.call, outcome.plan, outcome.features, outcome.ledger
    prediction, draft, verdict = features.prediction, plan.draft, plan.verdict
    prompt = embedding_text(outcome.hub_request) if outcome.hub_request is not None else ""
    served = ledger.served.usage if ledger.served is not None else None
    draft_usage = draft.usage if draft is not None else None
    message = outcome.served.message if outcome.served is not None else None
    store_text, vector = settings.store_text, features.vector
    strong_ran = plan.rule is not None and plan.route in ("escalated", "strong")
    verifier_row = verdict.verifier_features if verdict else None
    return OutcomeRecord(
        request_id=call.request_id, created_at=outcome.clock.created_at, tenant=call.principal.tenant,
        endpoint=call.endpoint.value, requested_model=call.model, route=plan.route,
        reason=_reason(outcome),
        draft_model=plan.rule.draft_model if plan.rule else None,
        strong_model=plan.rule.strong_model if plan.rule else None, cache_hit=outcome.cache_hit,
        prediction=prediction.p_good if prediction else None,
        skip_threshold=prediction.skip_threshold if prediction else None,
        artifact_version=prediction.artifact_version if prediction else None,
        features_version=FEATURES_VERSION if features.structural is not None else None,
        features=features.structural,
        embedding=vector.astype(np.float32).tobytes() if vector is not None and settings.store_embeddings else None,
        confidence=verdict.score.value if verdict else None,
        components={c.name: c.value for c in verdict.score.components} if verdict else {},
        accepted=(plan.draft_status == "accepted") if draft is not None else None,
        prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
        prompt_text=prompt if store_text else None,
        draft_text=answer_text(draft.completion.message) if store_text and draft and draft.completion
        and draft.completion.message else None,
        strong_text=answer_text(message) if store_text and message and plan.draft_status != "accepted" else None,
        input_tokens=served.input_tokens if served else None,
        output_tokens=served.output_tokens if served else None,
        draft_input_tokens=draft_usage.input_tokens if draft_usage else None,
        draft_output_tokens=draft_usage.output_tokens if draft_usage else None,
        cost_usd=ledger.actual_usd if (ledger.served is not None or outcome.cache_hit or draft_usage) else None,
        strong_only_cost_usd=ledger.strong_only_usd, latency_ms=outcome.latency_ms,
        draft_latency_ms=draft.latency_ms if draft else None,
        strong_latency_ms=outcome.latency_ms - (draft.latency_ms if draft else 0.0) if strong_ran else None,
        verifier_features=verifier_row,
        verifier_features_version=VERIFIER_FEATURES_VERSION if verifier_row is not None else None,
        record_id=new_record_id(),
    )
