"""Resolves a requested model to the provider that serves it, and builds that provider's headers."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from router.errors import NotFoundError
from router.providers.base import HOP_BY_HOP, Provider
from router.settings import ModelRoute, ProviderKind, Settings
from router.types import Principal

ANTHROPIC_VERSION = "2023-06-01"
_NOT_FORWARDED = HOP_BY_HOP | {"x-api-key", "authorization", "accept-encoding", "accept", "cookie"}
_CONTROL_PREFIX = "x-cascadeflow-"


@dataclass(frozen=True)
class Target:
    """A provider and the model name it knows the request's model by."""

    provider: Provider
    upstream_model: str


class ProviderRegistry:
    """Owns every provider and the model routing table."""

    def __init__(self, settings: Settings) -> None:
        self.providers = {
            name: Provider(name, settings.provider_kind(name), provider)
            for name, provider in settings.providers.items()
        }
        self._routes: list[ModelRoute] = list(settings.models)

    async def open(self) -> None:
        """Open every provider's pooled session."""
        for provider in self.providers.values():
            await provider.open()

    async def close(self) -> None:
        """Close every provider's session."""
        for provider in self.providers.values():
            await provider.close()

    def default_for(self, family: ProviderKind) -> Provider | None:
        """The provider that serves unrouted models of a dialect family."""
        if family in self.providers and self.providers[family].kind == family:
            return self.providers[family]
        return next((p for p in self.providers.values() if p.kind == family), None)

    def resolve(self, model: str, client_family: ProviderKind) -> Target:
        """`provider/model` names a provider explicitly; else the first matching route; else the client's kind."""
        prefix, slash, rest = model.partition("/")
        if slash and prefix in self.providers:
            return Target(self.providers[prefix], rest)
        for route in self._routes:
            if fnmatch.fnmatchcase(model, route.match):
                return Target(self.providers[route.provider], route.upstream_model or model)
        provider = self.default_for(client_family)
        if provider is None:
            raise NotFoundError(f"no provider serves model {model!r}", param="model")
        return Target(provider, model)

    def listed_models(self) -> list[str]:
        """Model names that the routing table names exactly (no glob patterns)."""
        return [route.match for route in self._routes if not any(ch in route.match for ch in "*?[")]


def upstream_headers(provider: Provider, client_headers: Mapping[str, str], principal: Principal,
                     *, client_family: ProviderKind) -> dict[str, str]:
    """Headers for a provider: the client's own ones when the dialect matches, auth per the auth mode."""
    headers: dict[str, str] = {}
    same_family = provider.kind == client_family
    if same_family:
        headers.update({k: v for k, v in client_headers.items()
                        if k not in _NOT_FORWARDED and not k.startswith(_CONTROL_PREFIX)})
    headers["content-type"] = "application/json"
    if provider.kind == "anthropic":
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
    forward_client = (
        principal.mode == "pass_through"
        and same_family
        and provider.settings.forward_client_key
        and bool(principal.credential_headers)
    )
    if forward_client:
        headers.update(dict(principal.credential_headers))
    elif provider.settings.api_key is not None:
        key = provider.settings.api_key.get_secret_value()
        if provider.kind == "anthropic":
            headers["x-api-key"] = key
        else:
            headers["authorization"] = f"Bearer {key}"
    headers.update(provider.settings.headers)
    return headers
