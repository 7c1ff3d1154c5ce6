"""Helpers shared by the tests: settings pointing at the scripted upstream, and request lookup."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from router.replay.runner import BackgroundServer
from router.settings import Settings

ProxyFactory = Callable[..., BackgroundServer]
NO_RETRIES_NOR_BREAKER: dict[str, Any] = {"retry": {"max_retries": 0}, "breaker": {"enabled": False}}
"""Each request reaches the scripted upstream once, and its scripted failures open no circuit (tests/providers/
turn both on)."""


def proxy_settings(upstream_url: str, **sections: Any) -> Settings:
    """Settings pointing every provider at the scripted upstream."""
    providers = {
        "anthropic": {"kind": "anthropic", "base_url": upstream_url, "api_key": "sk-proxy-anthropic"},
        "openai": {"kind": "openai", "base_url": upstream_url + "/v1", "api_key": "sk-proxy-openai"},
        "chatonly": {"kind": "openai", "base_url": upstream_url + "/v1", "api_key": "sk-proxy-chatonly",
                     "supports_responses": False},
    }
    models = [
        {"match": "claude-*", "provider": "anthropic"},
        {"match": "gpt-*", "provider": "openai"},
        {"match": "chatonly-*", "provider": "chatonly"},
        {"match": "alias-claude", "provider": "anthropic", "upstream_model": "claude-haiku-4-5"},
        {"match": "alias-gpt", "provider": "openai", "upstream_model": "gpt-4o-mini"},
    ]
    data: dict[str, Any] = {"providers": providers, "models": models, "embedding": {"enabled": False},
                            "cache": {"enabled": False},
                            "outcome_log": {"enabled": False}, "learned_router": {"enabled": False},
                            "verifier": {"enabled": False}, "resilience": NO_RETRIES_NOR_BREAKER, **sections}
    return Settings(**data)


def marker() -> str:
    """A unique text to find a request among those the upstream received."""
    return "m-" + uuid.uuid4().hex[:12]


def received_with(upstream: BackgroundServer, text: str) -> list[Any]:
    """The requests the upstream received whose body mentions the text."""
    requests = upstream.app.state.received  # type: ignore[attr-defined]
    return [item for item in requests if text in json.dumps(item_body(item))]


def item_body(item: Any) -> Any:
    """The parsed body of a received request."""
    return item["body"] if isinstance(item, dict) else item.body
