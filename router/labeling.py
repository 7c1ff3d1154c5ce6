"""Labels for live traffic: was the draft good enough? Judged in the background, never on the request path.

An escalated request has both answers: it is judged at once. A share of the others (`labels.exploration_rate`)
is explored: an accepted draft is also sent to the strong model, and a request the learned router sent straight
to the strong model is also sent to the draft, so labels are not limited to what the router already escalates.
Exploration and grading cost money: each call is a ledger entry of its own kind (`cascadeflow_cost_usd_total
{kind="exploration"|"grader"}`), and they are paid with the provider's configured key, never with a client's
forwarded key unless `labels.spend_client_keys` says so.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

import numpy as np

from router.background import BackgroundTasks
from router.errors import UpstreamError
from router.learning_settings import LabelSettings
from router.ledger import Ledger, LedgerEntry
from router.metrics import Metrics
from router.model_settings import ModelInfoTable
from router.policy.capabilities import NotServableByDraft, adapt_request
from router.providers.call import Upstream
from router.providers.registry import NoCredentials, ProviderRegistry
from router.providers.wire import Completion
from router.scoring.agreement import GRADER_SYSTEM, Verdict, grader_prompt, grader_verdict, judge_agreement
from router.scoring.extract import answer_text
from router.settings import CascadeRule
from router.types import ClientCall, JSONObject

if TYPE_CHECKING:
    from router.embedding.encoder import Encoder
    from router.storage import OutcomeLog

logger = logging.getLogger("router.labeling")
GRADER_MAX_TOKENS = 8


class Labeler:
    """Judges outcomes and writes their labels to the outcome log."""

    def __init__(self, settings: LabelSettings, log: OutcomeLog, registry: ProviderRegistry, upstream: Upstream,
                 metrics: Metrics, ledger: Ledger, encoder: Encoder | None = None,
                 rng: random.Random | None = None, model_info: ModelInfoTable | None = None) -> None:
        self._settings = settings
        self._model_info = model_info or {}
        self._log = log
        self._registry = registry
        self._upstream = upstream
        self._metrics = metrics
        self._ledger = ledger
        self._encoder = encoder
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._tasks = BackgroundTasks(metrics, "labels", logger)

    def reconfigure(self, settings: LabelSettings, model_info: ModelInfoTable) -> None:
        """Label new requests by these settings and `model_info` (a reloaded config); labels in flight keep theirs."""
        if settings.max_concurrent != self._settings.max_concurrent:
            self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._settings, self._model_info = settings, model_info

    def escalated(self, request_id: str, call: ClientCall, rule: CascadeRule, hub_request: JSONObject,
                  draft: JSONObject, strong: JSONObject) -> None:
        """Label a request that has both answers."""
        self._tasks.spawn(self._label(request_id, call, rule, hub_request, draft, strong))

    def explore(self, request_id: str, call: ClientCall, rule: CascadeRule, hub_request: JSONObject,
                served: JSONObject, served_by: str) -> bool:
        """With the exploration probability, fetch the other tier's answer in the background and label."""
        if self._rng.random() >= self._settings.exploration_rate:
            return False
        self._tasks.spawn(self._explore(request_id, call, rule, hub_request, served, served_by))
        return True

    async def _explore(self, request_id: str, call: ClientCall, rule: CascadeRule, hub_request: JSONObject,
                       served: JSONObject, served_by: str) -> None:
        other = rule.strong_model if served_by == "draft" else rule.draft_model
        tier = "strong" if served_by == "draft" else "draft"
        result = await self._ask(call, other, hub_request, rule.draft_timeout_s, "exploration")
        if result is None or result.message is None:
            self._metrics.inc("cascadeflow_explorations_total", tier=tier, result="failed")
            return
        self._metrics.inc("cascadeflow_explorations_total", tier=tier, result="ok")
        draft, strong = (served, result.message) if served_by == "draft" else (result.message, served)
        await self._label(request_id, call, rule, hub_request, draft, strong)

    async def _label(self, request_id: str, call: ClientCall, rule: CascadeRule, hub_request: JSONObject,
                     draft: JSONObject, strong: JSONObject) -> None:
        verdict = None
        if self._settings.judge == "grader":
            verdict = await self._grade(call, rule, hub_request, draft, strong)
        if verdict is None:
            similarity = await self._similarity(draft, strong)
            verdict = judge_agreement(hub_request, draft, strong, similarity=similarity,
                                      threshold=self._settings.agreement_similarity)
        if verdict is None:
            self._metrics.inc("cascadeflow_labels_total", source="none", label="none")
            return
        self._log.submit_label(request_id, verdict.good, verdict.source, verdict.detail)
        self._metrics.inc("cascadeflow_labels_total", source=verdict.source.split(":")[0],
                          label="good" if verdict.good else "bad")

    async def _similarity(self, draft: JSONObject, strong: JSONObject) -> float | None:
        if self._encoder is None or not self._encoder.loaded:
            return None
        texts = answer_text(draft), answer_text(strong)
        if not texts[0].strip() or not texts[1].strip():
            return 0.0 if texts[0].strip() != texts[1].strip() else 1.0
        vectors = await asyncio.gather(*(self._encoder.embed(text) for text in texts))
        return float(np.dot(vectors[0], vectors[1]))

    async def _grade(self, call: ClientCall, rule: CascadeRule, hub_request: JSONObject, draft: JSONObject,
                     strong: JSONObject) -> Verdict | None:
        grader = self._settings.grader_model or rule.strong_model
        request = {"model": grader, "max_tokens": GRADER_MAX_TOKENS, "system": GRADER_SYSTEM,
                   "messages": [{"role": "user", "content": grader_prompt(hub_request, draft, strong)}]}
        result = await self._ask(call, grader, request, rule.draft_timeout_s, "grader")
        if result is None or result.message is None:
            return None
        return grader_verdict(result.message, grader)

    async def _ask(self, call: ClientCall, model: str, request: JSONObject, timeout_s: float,
                   kind: str) -> Completion | None:
        """A complete answer of `model` (buffered, paid as `kind` in the ledger), or None when it failed (logged)."""
        async with self._slots:
            try:
                target = self._registry.resolve(model, call.dialect, buffered=True)
                adapted = adapt_request(request, target.upstream_model, self._model_info)
                buffered = await self._upstream.buffer(
                    call, target, adapted, native=False, timeout_s=timeout_s, background=True,
                    on_cancel=lambda cut: self._pay(target.upstream_model, target.provider.name, cut, kind))
            except NoCredentials as exc:
                logger.info("%s to %s skipped: %s", kind, model, exc)
                self._metrics.inc("cascadeflow_explorations_total", tier=kind, result="no_key")
                return None
            except (UpstreamError, NotServableByDraft) as exc:
                logger.info("%s to %s failed: %s", kind, model, exc)
                return None
        completion = buffered.completion
        self._pay(target.upstream_model, target.provider.name, completion, kind)
        return completion if completion.complete else None

    def _pay(self, model: str, provider: str, completion: Completion, kind: str) -> None:
        """Post what a background call spent (all of it, or what it had used when it was cancelled)."""
        self._ledger.post(LedgerEntry(self._ledger.charge(model, completion.usage, provider)), kind=kind)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for the labels in flight (in tests; at shutdown for at most `timeout_s`, then they are cancelled)."""
        await self._tasks.drain(timeout_s)
