"""The effective config as an operator may read it: every secret masked, whatever the key is called."""

from __future__ import annotations

import re
from typing import Any

from router.settings import Settings

MASK = "***"
_SECRET_KEY = re.compile(r"(key|secret|token|passw|credential|authorization)", re.IGNORECASE)
"""A text under such a name is masked (api_key, key_sha256, admin_keys, ...): flags and numbers are shown."""
_HEADER_MAPS = frozenset({"headers"})
"""Mappings whose every value is masked: provider and exporter headers carry keys under any name."""
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)(?P<password>[^/@\s]+)(?P<at>@)", re.IGNORECASE)


def masked_config(settings: Settings) -> dict[str, Any]:
    """The settings as JSON with provider keys, header values, key digests and URL passwords masked."""
    masked = _mask(settings.model_dump(mode="json"), "")
    assert isinstance(masked, dict)
    return masked


def _mask(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if key in _HEADER_MAPS:
            return {name: MASK for name in value}
        return {name: _mask(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [_mask(item, key) for item in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and value:
            return MASK
        return _URL_PASSWORD.sub(lambda match: f"{match['head']}{MASK}{match['at']}", value)
    return value
