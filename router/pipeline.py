"""The one orchestrator: every client call goes through Pipeline.handle."""

from __future__ import annotations

from router.bridge import Bridge
from router.providers.registry import ProviderRegistry
from router.types import Answer, ClientCall, client_family


class Pipeline:
    """Resolve the model, then serve the call from its provider."""

    def __init__(self, registry: ProviderRegistry, bridge: Bridge) -> None:
        self._registry = registry
        self._bridge = bridge

    async def handle(self, call: ClientCall) -> Answer:
        """Answer one client call in its own dialect."""
        target = self._registry.resolve(call.model, client_family(call.dialect))
        return await self._bridge.forward(call, target)
