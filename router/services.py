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
from router.pipeline import Pipeline
from router.providers.registry import ProviderRegistry
from router.scoring import ConfidenceScorer
from router.settings import Settings

if TYPE_CHECKING:
    from router.caching import CacheLayer
    from router.embedding.encoder import Encoder

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
    _owned: list[Any] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, encoder: Encoder | None = None) -> Services:
        """Wire the objects together (no I/O: `start` opens connections and loads models)."""
        registry = ProviderRegistry(settings)
        metrics = Metrics()
        bridge = Bridge()
        cascade = Cascade(registry, bridge, ConfidenceScorer(), PriceBook())
        if encoder is None and settings.embedding.enabled:
            from router.embedding.encoder import Encoder

            embedding = settings.embedding
            encoder = Encoder(max_batch=embedding.max_batch, window_ms=embedding.window_ms,
                              max_chars=embedding.max_chars)
        cache_layer = None
        semantic = None
        if settings.cache.enabled and encoder is not None:
            from router.caching import CacheLayer
            from router.semantic_setup import build_semantic_cache

            semantic = build_semantic_cache(settings.cache)
            cache_layer = CacheLayer(encoder, semantic, metrics, threshold=settings.cache.similarity_threshold,
                                     allow_sampled=settings.cache.allow_sampled)
        pipeline = Pipeline(registry, bridge, list(settings.cascade_rules), cascade, metrics, cache_layer)
        services = cls(settings=settings, registry=registry, authenticator=Authenticator(settings.auth),
                       pipeline=pipeline, catalog=ModelCatalog(settings, registry), metrics=metrics,
                       encoder=encoder, cache_layer=cache_layer)
        services._owned = [semantic] if semantic is not None else []
        return services

    async def start(self) -> None:
        """Open connections, load the encoder (in a thread), start the cache."""
        await self.registry.open()
        if self.encoder is not None:
            if not self.encoder.loaded:
                await asyncio.to_thread(self.encoder.load)
            await self.encoder.start()
        for owned in self._owned:
            await owned.start()

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
        return checks

    async def stop(self) -> None:
        """Drain background work, close connections."""
        await self.pipeline.drain()
        for owned in self._owned:
            await owned.stop()
        if self.encoder is not None:
            await self.encoder.stop()
        await self.registry.close()
