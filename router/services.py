"""The composition root's product: every long-lived object of one proxy process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.auth import Authenticator, build_limiter
from router.bodies import BodyBudget
from router.budgets.setup import build_budgets
from router.catalog import ModelCatalog
from router.costs import PriceBook
from router.dashboard.state import DashboardState
from router.ledger import Ledger, metric_models
from router.metrics import Metrics
from router.pipeline import Pipeline, Steps
from router.pipeline.draft import DraftStep
from router.pipeline.fallback import Fallbacks
from router.pipeline.predict import PredictStep
from router.pipeline.record import RecordStep
from router.pipeline.serve import ServeStep
from router.pipeline.verify import VerifyStep
from router.providers.call import Upstream
from router.providers.registry import ProviderRegistry
from router.providers.resilience import UpstreamGuard, provider_checks
from router.scoring import ConfidenceScorer
from router.settings import Settings
from router.shutdown import Deadline, ShutdownPlan
from router.spend.ledger import SpendLedger, build_spend_ledger

if TYPE_CHECKING:
    from router.embedding.encoder import Encoder
    from router.learned import LearnedRouter
    from router.pipeline.cache import CacheStep
    from router.pipeline.record import OutcomeRecorder
    from router.storage.redis_health import RedisHealth
    from router.verifier import Verifier

JOURNALED = "cut short (what it did not write is in its journal, written at the next start)"
"""How a stop that wrote records was cut, in its warning."""


@dataclass
class Services:
    """Built once in the application's lifespan and injected into handlers."""

    settings: Settings
    registry: ProviderRegistry
    authenticator: Authenticator
    pipeline: Pipeline
    catalog: ModelCatalog
    metrics: Metrics
    bodies: BodyBudget
    guard: UpstreamGuard | None = None
    encoder: Encoder | None = None
    cache_step: CacheStep | None = None
    learned: LearnedRouter | None = None
    verifier: Verifier | None = None
    recorder: OutcomeRecorder | None = None
    spend: SpendLedger | None = None
    ledger: Ledger | None = None
    state_redis: RedisHealth | None = None
    """The shared Redis of the rate limiter and the budgets, when they use one."""
    dashboard: DashboardState = field(default_factory=DashboardState)
    """The dashboard's sign-in sessions (in that Redis when there is one) and summary cache."""
    _owned: list[Any] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, encoder: Encoder | None = None) -> Services:
        """Wire the objects together (no I/O: `start` opens connections and loads models)."""
        registry = ProviderRegistry(settings)
        metrics = Metrics()
        prices = PriceBook(model_info=settings.model_info)
        ledger = Ledger(prices, metrics, metric_models(settings))
        guard = UpstreamGuard(settings.resilience, {name: (provider.retry, provider.breaker)
                                                    for name, provider in settings.providers.items()}, metrics)
        upstream = Upstream(spend_client_keys=settings.labels.spend_client_keys, guard=guard)
        if encoder is None and settings.embedding.enabled:
            from router.embedding.encoder import Encoder

            embedding = settings.embedding
            encoder = Encoder(max_batch=embedding.max_batch, window_ms=embedding.window_ms,
                              max_chars=embedding.max_chars, threads=embedding.threads)
        cache, semantic = cls._cache(settings, encoder, metrics)
        verifier = None
        if settings.verifier.enabled and settings.cascade_rules:
            from router.verifier import Verifier

            verifier = Verifier(settings.verifier, metrics)
        learned = None
        if settings.learned_router.enabled and settings.cascade_rules and encoder is not None:
            from router.embedding.encoder import MODEL_NAME
            from router.learned import LearnedRouter

            learned = LearnedRouter(settings.learned_router, metrics, dimension=encoder.dimension,
                                    embedding_model=MODEL_NAME,
                                    paired_skip=verifier.paired_skip_threshold if verifier is not None else None)
        recorder = cls._recorder(settings, registry, upstream, metrics, ledger, encoder)
        spend = build_spend_ledger(settings.spend, metrics)
        record = RecordStep(ledger, metrics, recorder, cache, spend=spend)
        steps = Steps(cache=cache,
                      predict=PredictStep(learned, encoder, metrics, logging_features=recorder is not None),
                      draft=DraftStep(registry, upstream, settings.model_info),
                      verify=VerifyStep(ConfidenceScorer(), verifier, logging_features=recorder is not None),
                      serve=ServeStep(registry, upstream, ledger, record, Fallbacks(registry, metrics)), record=record)
        pipeline = Pipeline(registry, upstream, list(settings.cascade_rules), steps)
        state_redis = cls._redis_health(settings, metrics)
        budgets = build_budgets(settings, registry, prices, metrics, spend.history if spend is not None else None,
                                state_redis)
        authenticator = Authenticator(settings.auth, budgets=budgets, metrics=metrics, state=settings.state,
                                      limiter=build_limiter(settings.auth, state_redis))
        services = cls(settings=settings, registry=registry, authenticator=authenticator, pipeline=pipeline,
                       catalog=ModelCatalog(settings, registry), metrics=metrics,
                       bodies=BodyBudget(settings.server.max_body_bytes, settings.server.max_inflight_body_bytes,
                                         metrics), guard=guard,
                       encoder=encoder, cache_step=cache, learned=learned, verifier=verifier, recorder=recorder,
                       spend=spend, ledger=ledger, state_redis=state_redis,
                       dashboard=DashboardState.build(state_redis, settings.auth.redis_prefix))
        services._owned = [semantic] if semantic is not None else []
        return services

    @staticmethod
    def _redis_health(settings: Settings, metrics: Metrics) -> RedisHealth | None:
        """One view of the limiter's and the budgets' Redis, shared by both (`state.on_failure`, `timeout_s`)."""
        url = settings.auth.limiter_redis_url
        if url is None:
            return None
        from router.storage.redis_health import RedisHealth

        state = settings.state
        return RedisHealth(url, on_failure=state.on_failure, timeout_s=state.timeout_s, metrics=metrics)

    @staticmethod
    def _cache(settings: Settings, encoder: Encoder | None, metrics: Metrics) -> tuple[CacheStep | None, Any]:
        """The cache step, when the proxy or a rule opted in and there is an encoder."""
        if not settings.semantic_cache_wanted or encoder is None:
            return None, None
        from router.pipeline.cache import CacheStep
        from router.semantic_setup import build_semantic_cache

        semantic = build_semantic_cache(settings.cache)
        return CacheStep(encoder, semantic, metrics, settings.cache), semantic

    @staticmethod
    def _recorder(settings: Settings, registry: ProviderRegistry, upstream: Upstream, metrics: Metrics,
                  ledger: Ledger, encoder: Encoder | None) -> OutcomeRecorder | None:
        """The outcome log and, with cascade rules, the labeler of live traffic."""
        if not settings.outcome_log.enabled:
            return None
        from router.labeling import Labeler
        from router.pipeline.record import OutcomeRecorder
        from router.storage import open_outcome_log

        log = open_outcome_log(settings.outcome_log)
        labeler = Labeler(settings.labels, log, registry, upstream, metrics, ledger, encoder,
                          model_info=settings.model_info) \
            if settings.cascade_rules else None
        return OutcomeRecorder(log, settings.outcome_log, metrics, labeler)

    async def start(self) -> None:
        """Open connections, load the encoder (in a thread), start the cache."""
        await self.registry.open()
        if self.spend is not None:
            await self.spend.start()
        await self.authenticator.start()
        if self.encoder is not None:
            if not self.encoder.loaded:
                await asyncio.to_thread(self.encoder.load)
            await self.encoder.start()
        for owned in self._owned:
            await owned.start()
        if self.recorder is not None:
            await self.recorder.log.start()
        if self.learned is not None:
            await self.learned.start()
        if self.verifier is not None:
            await self.verifier.start()

    def readiness(self) -> dict[str, dict[str, object]]:
        """Each dependency's state for /ready; `required` ones decide readiness, others only degrade."""
        checks = provider_checks(self.registry, self.guard)
        if self.encoder is not None:
            checks["encoder"] = {"ok": self.encoder.loaded, "required": False}
        for owned in self._owned:
            status = owned.status()
            checks["cache"] = {"ok": bool(status.get("healthy", False)), "required": False, **status}
        if self.recorder is not None:
            status = self.recorder.log.status()
            checks["outcome_log"] = {"ok": bool(status.get("healthy", False)), "required": False, **status}
        if self.spend is not None:
            status = self.spend.status()
            checks["spend_ledger"] = {"ok": bool(status.get("healthy", False)), "required": False, **status}
        if self.learned is not None:
            checks["learned_router"] = self.learned.status()
        if self.verifier is not None:
            checks["verifier"] = self.verifier.status()
        checks["auth"] = self.authenticator.status()
        if self.state_redis is not None:
            checks["redis"] = self.state_redis.status()
        return checks

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Drain background work, write what is queued and close connections, all before `deadline` (by default
        the stop's share of `server.shutdown_grace_s`: router/shutdown.py).

        uvicorn has given the answers in flight their share already; nobody waits for what follows. Cache writes
        and labels get at most half of the time left, then are cancelled (what they spent is posted); the outcome
        log and the spend ledger write what is queued, side by side, in the time left (what they do not write
        stays in their journals, written at the next start); then everything closes."""
        if deadline is None:
            deadline = Deadline(ShutdownPlan.of(self.settings.server.shutdown_grace_s).stop_s)
        await deadline.run(self.pipeline.drain(deadline.left() / 2), "background work", cut=JOURNALED)
        writers = [self.spend.stop()] if self.spend is not None else []
        if self.recorder is not None:
            writers.append(self.recorder.log.stop())
        await deadline.run(asyncio.gather(*writers), "the outcome log and the spend ledger", cut=JOURNALED)
        if self.learned is not None:
            await deadline.run(self.learned.stop(), "the learned router")
        if self.verifier is not None:
            await deadline.run(self.verifier.stop(), "the verifier")
        for owned in self._owned:
            await deadline.run(owned.stop(), "the semantic cache (its snapshot is kept as it was)")
        if self.encoder is not None:
            await deadline.run(self.encoder.stop(), "the encoder")
        await deadline.run(self.authenticator.stop(), "the key store, the limiter and the budgets")
        await deadline.run(self.dashboard.stop(), "the dashboard's sessions")
        await deadline.run(self.registry.close(), "the provider connections")
