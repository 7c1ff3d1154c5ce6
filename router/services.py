"""The composition root's product: every long-lived object of one proxy process."""

from __future__ import annotations

from dataclasses import dataclass

from router.auth import Authenticator
from router.bridge import Bridge
from router.catalog import ModelCatalog
from router.costs import PriceBook
from router.pipeline import Pipeline
from router.providers.registry import ProviderRegistry
from router.scoring import ConfidenceScorer
from router.settings import Settings


@dataclass
class Services:
    """Built once in the application's lifespan and injected into handlers."""

    settings: Settings
    registry: ProviderRegistry
    authenticator: Authenticator
    pipeline: Pipeline
    catalog: ModelCatalog

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Wire the objects together (no I/O: `start` opens connections)."""
        registry = ProviderRegistry(settings)
        return cls(
            settings=settings,
            registry=registry,
            authenticator=Authenticator(settings.auth),
            pipeline=Pipeline(registry, Bridge(), list(settings.cascade_rules), ConfidenceScorer(), PriceBook()),
            catalog=ModelCatalog(settings, registry),
        )

    async def start(self) -> None:
        """Open connections."""
        await self.registry.open()

    def readiness(self) -> dict[str, dict[str, object]]:
        """Each dependency's state, for /ready."""
        return {
            f"provider:{name}": {"ok": provider.is_open, "base_url": provider.settings.base_url}
            for name, provider in self.registry.providers.items()
        }

    async def stop(self) -> None:
        """Close connections."""
        await self.registry.close()
