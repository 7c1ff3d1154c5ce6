"""The model list: configured names merged with what the client's own provider lists."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from router.errors import UpstreamError
from router.providers.registry import NoCredentials, ProviderRegistry, upstream_headers
from router.settings import ProviderKind, Settings
from router.types import JSONObject, Principal

logger = logging.getLogger("router.catalog")

_EPOCH_CREATED = 1_700_000_000


def model_entry(model_id: str, owned_by: str, created: int = _EPOCH_CREATED,
                display_name: str | None = None) -> JSONObject:
    """One model in a shape both SDKs accept (Anthropic and OpenAI fields side by side)."""
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": owned_by,
        "type": "model",
        "display_name": display_name or model_id,
        "created_at": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def model_list(entries: list[JSONObject]) -> JSONObject:
    """A list page in a shape both SDKs accept."""
    return {
        "object": "list",
        "data": entries,
        "has_more": False,
        "first_id": entries[0]["id"] if entries else None,
        "last_id": entries[-1]["id"] if entries else None,
    }


def _from_upstream(item: Any) -> JSONObject | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    created = item.get("created")
    if not isinstance(created, int):
        created_at = item.get("created_at")
        try:
            created = int(datetime.fromisoformat(str(created_at).replace("Z", "+00:00")).timestamp())
        except ValueError:
            created = _EPOCH_CREATED
    owned_by = str(item.get("owned_by") or "upstream")
    return model_entry(item["id"], owned_by, created, item.get("display_name"))


class ModelCatalog:
    """Lists the models a client may ask for."""

    def __init__(self, settings: Settings, registry: ProviderRegistry) -> None:
        self._registry = registry
        self._configured = [
            *registry.listed_models(),
            *(rule.request_model for rule in settings.cascade_rules if rule.request_model),
            *(f"cascade/{rule.name}" for rule in settings.cascade_rules if rule.name),
        ]

    async def listing(self, principal: Principal, headers: Mapping[str, str], family: ProviderKind) -> JSONObject:
        """Configured models first, then the client's provider's own list when it answers."""
        entries = [model_entry(name, "cascadeflow") for name in dict.fromkeys(self._configured)]
        seen = {entry["id"] for entry in entries}
        for item in await self._upstream_models(principal, headers, family):
            if item["id"] not in seen:
                seen.add(item["id"])
                entries.append(item)
        return model_list(entries)

    async def _upstream_models(self, principal: Principal, headers: Mapping[str, str],
                               family: ProviderKind) -> list[JSONObject]:
        provider = self._registry.default_for(family)
        if provider is None:
            return []
        try:
            request_headers = upstream_headers(provider, headers, principal, client_family=family)
            reply = await provider.request("GET", "/v1/models?limit=1000", None, request_headers, timeout_s=5.0)
            data = orjson.loads(reply.body)
        except (UpstreamError, NoCredentials, orjson.JSONDecodeError) as exc:
            logger.info("model list of provider %s unavailable: %s", provider.name, exc)
            return []
        items = data.get("data") if isinstance(data, dict) else None
        converted = [_from_upstream(item) for item in items or []]
        return [item for item in converted if item is not None]
