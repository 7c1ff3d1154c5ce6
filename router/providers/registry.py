"""Resolves a requested model to the provider that serves it, and builds that provider's headers."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from router.errors import AuthenticationError, NotFoundError
from router.providers.anthropic import AnthropicWire
from router.providers.openai_chat import ChatWire
from router.providers.openai_responses import ResponsesWire
from router.providers.transport import HOP_BY_HOP, Provider
from router.providers.wire import WireAdapter
from router.settings import ModelRoute, ProviderKind, Settings
from router.types import Dialect, Principal, client_family

ANTHROPIC_VERSION = "2023-06-01"
_NOT_FORWARDED = HOP_BY_HOP | {"x-api-key", "authorization", "accept-encoding", "accept", "cookie"}
_CONTROL_PREFIX = "x-cascadeflow-"


@dataclass(frozen=True)
class Target:
    """A provider, the model name it knows the request's model by, and the wire it is spoken to in."""

    provider: Provider
    upstream_model: str
    wire: WireAdapter
    client_dialect: Dialect

    @property
    def native(self) -> bool:
        """Whether the provider speaks the client's own dialect, so the raw body can be forwarded."""
        return self.wire.dialect is self.client_dialect


def wire_of(provider: Provider, dialect: Dialect, *, buffered: bool = False) -> WireAdapter:
    """The wire format a provider is spoken to in, for a client of this dialect (a buffered call, never relayed
    raw, is translated: Responses clients are served from Chat Completions then)."""
    if provider.kind == "anthropic":
        return AnthropicWire()
    if dialect is Dialect.OPENAI_RESPONSES and provider.settings.supports_responses and not buffered:
        return ResponsesWire()
    return ChatWire()


class ProviderRegistry:
    """Owns every provider and the model routing table."""

    def __init__(self, settings: Settings) -> None:
        self.providers = {
            name: Provider(name, settings.provider_kind(name), provider)
            for name, provider in settings.providers.items()
        }
        self._routes: list[ModelRoute] = list(settings.models)
        self._matched: dict[str, ModelRoute | None] = {}  # model name -> its route (glob matching per request adds up)

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

    def resolve(self, model: str, dialect: Dialect, *, buffered: bool = False) -> Target:
        """`provider/model` names a provider explicitly; else the first matching route; else the client's kind."""
        prefix, slash, rest = model.partition("/")
        if slash and prefix in self.providers:
            provider, upstream = self.providers[prefix], rest
        else:
            route = self._route_of(model)
            if route is not None:
                provider, upstream = self.providers[route.provider], route.upstream_model or model
            else:
                found = self.default_for(client_family(dialect))
                if found is None:
                    raise NotFoundError(f"no provider serves model {model!r}", param="model")
                provider, upstream = found, model
        return Target(provider, upstream, wire_of(provider, dialect, buffered=buffered), dialect)

    def fallback_models(self, model: str) -> list[str]:
        """The `fallback_models` of the route that serves a model (none for a `provider/model` name)."""
        prefix, slash, _ = model.partition("/")
        if slash and prefix in self.providers:
            return []
        route = self._route_of(model)
        return list(route.fallback_models) if route is not None else []

    def _route_of(self, model: str) -> ModelRoute | None:
        """The first route whose pattern matches the model name, remembered (for up to 4,096 names)."""
        if model in self._matched:
            return self._matched[model]
        route = next((r for r in self._routes if fnmatch.fnmatchcase(model, r.match)), None)
        if len(self._matched) >= 4096:  # names come from clients: the memo stays bounded
            self._matched.clear()
        self._matched[model] = route
        return route

    def reconfigure(self, routes: list[ModelRoute]) -> None:
        """Resolve new requests by a reloaded routing table (its providers are the running ones)."""
        self._routes = list(routes)
        self._matched = {}

    def listed_models(self) -> list[str]:
        """Model names that the routing table names exactly (no glob patterns)."""
        return [route.match for route in self._routes if not any(ch in route.match for ch in "*?[")]


class NoCredentials(AuthenticationError):
    """No key may pay for this call: background work would have to spend the client's own key, which it did not ask
    for, or a hybrid caller's own key does not fit the provider and the configured one is not for it (401)."""


def upstream_headers(provider: Provider, client_headers: Mapping[str, str], principal: Principal,
                     *, client_family: ProviderKind, background: bool = False,
                     spend_client_keys: bool = False) -> dict[str, str]:
    """Headers for a provider: the client's own ones when the dialect matches, auth per the auth mode.

    Background work (exploration, grading) uses the provider's configured key; the client's forwarded key only
    when `spend_client_keys` allows it, else NoCredentials is raised. A caller whose own key is its only one
    (`own_key_only`, hybrid) never gets the configured key: NoCredentials instead.
    """
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
    key = provider.settings.api_key.get_secret_value() if provider.settings.api_key is not None else None
    if background and forward_client and not spend_client_keys:
        if key is None or principal.own_key_only:
            raise NoCredentials(f"provider {provider.name} has no key for background work on this caller's behalf")
        forward_client = False
    if forward_client:
        headers.update(dict(principal.credential_headers))
    elif principal.own_key_only:
        raise NoCredentials(f"provider {provider.name} does not take this key; a proxy key is needed for its models")
    elif key is not None:
        if provider.kind == "anthropic":
            headers["x-api-key"] = key
        else:
            headers["authorization"] = f"Bearer {key}"
    headers.update(provider.settings.headers)
    return headers
