"""The composition root's product: every long-lived object of one proxy process."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.auth import Authenticator
from router.bridge import Bridge
from router.cascade import Cascade
from router.catalog import ModelCatalog
from router.costs import PriceBook
from router.metrics import Metrics
from router.pipeline import Pipeline, PipelineParts
from router.providers.registry import ProviderRegistry
from router.scoring import ConfidenceScorer
from router.settings import Settings

if TYPE_CHECKING:
    from router.caching import CacheLayer
    from router.embedding.encoder import Encoder
    from router.learned import LearnedRouter
    from router.outcomes import OutcomeRecorder

logger = logging.getLogger("router.services")


@dataclass
class Services:
    """Built once in the application's lifespan and injected into handlers."""

    settings: Settings
    registry: ProviderRegistry
    authenticator: Authenticator
    pipeline: Pipeline
    catalog: ModelCatalog
    metrics: Metrics
    encoder: Encoder | None = None
    cache_layer: CacheLayer | None = None
    learned: LearnedRouter | None = None
    recorder: OutcomeRecorder | None = None
    _owned: list[Any] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, encoder: Encoder | None = None) -> Services:
        """Wire the objects together (no I/O: `start` opens connections and loads models)."""
        registry = ProviderRegistry(settings)
        metrics = Metrics()
        bridge = Bridge()
        prices = PriceBook()
        cascade = Cascade(registry, bridge, ConfidenceScorer(), prices)
        if encoder is None and settings.embedding.enabled:
            from router.embedding.encoder import Encoder

            embedding = settings.embedding
            encoder = Encoder(max_batch=embedding.max_batch, window_ms=embedding.window_ms,
                              max_chars=embedding.max_chars, threads=embedding.threads)
        cache_layer = None
        semantic = None
        if settings.cache.enabled and encoder is not None:
            from router.caching import CacheLayer
            from router.semantic_setup import build_semantic_cache

            semantic = build_semantic_cache(settings.cache)
            cache_layer = CacheLayer(encoder, semantic, metrics, threshold=settings.cache.similarity_threshold,
                                     allow_sampled=settings.cache.allow_sampled)
        learned = None
        if settings.learned_router.enabled and settings.cascade_rules and encoder is not None:
            from router.embedding.encoder import MODEL_NAME
            from router.learned import LearnedRouter

            learned = LearnedRouter(settings.learned_router, metrics, dimension=encoder.dimension,
                                    embedding_model=MODEL_NAME)
        recorder = cls._recorder(settings, registry, metrics, prices, encoder)
        parts = PipelineParts(cache=cache_layer, learned=learned, encoder=encoder, recorder=recorder)
        pipeline = Pipeline(registry, bridge, list(settings.cascade_rules), cascade, metrics, parts)
        services = cls(settings=settings, registry=registry, authenticator=Authenticator(settings.auth),
                       pipeline=pipeline, catalog=ModelCatalog(settings, registry), metrics=metrics,
                       encoder=encoder, cache_layer=cache_layer, learned=learned, recorder=recorder)
        services._owned = [semantic] if semantic is not None else []
        return services

    @staticmethod
    def _recorder(settings: Settings, registry: ProviderRegistry, metrics: Metrics, prices: PriceBook,
                  encoder: Encoder | None) -> OutcomeRecorder | None:
        """The outcome log and, with cascade rules, the labeler of live traffic."""
        if not settings.outcome_log.enabled:
            return None
        from router.labeling import Labeler
        from router.outcomes import OutcomeRecorder
        from router.storage import open_outcome_log

        log = open_outcome_log(settings.outcome_log)
        labeler = Labeler(settings.labels, log, registry, metrics, prices, encoder) if settings.cascade_rules else None
        return OutcomeRecorder(log, settings.outcome_log, metrics, prices, labeler)

    async def start(self) -> None:
        """Open connections, load the encoder (in a thread), start the cache."""
        await self.registry.open()
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

    def readiness(self) -> dict[str, dict[str, object]]:
        """Each dependency's state for /ready; `required` ones decide readiness, others only degrade."""
        checks: dict[str, dict[str, object]] = {
            f"provider:{name}": {"ok": provider.is_open, "required": True, "base_url": provider.settings.base_url}
            for name, provider in self.registry.providers.items()
        }
        if self.encoder is not None:
            checks["encoder"] = {"ok": self.encoder.loaded, "required": False}
        for owned in self._owned:
            status = owned.status()
            checks["cache"] = {"ok": bool(status.get("healthy", False)), "required": False, **status}
        if self.recorder is not None:
            status = self.recorder.log.status()
            checks["outcome_log"] = {"ok": bool(status.get("healthy", False)), "required": False, **status}
        if self.learned is not None:
            checks["learned_router"] = self.learned.status()
        return checks

    async def stop(self) -> None:
        """Drain background work, close connections."""
        await self.pipeline.drain()
        if self.learned is not None:
            await self.learned.stop()
        if self.recorder is not None:
            await self.recorder.log.stop()
        for owned in self._owned:
            await owned.stop()
        if self.encoder is not None:
            await self.encoder.stop()
        await self.registry.close()
