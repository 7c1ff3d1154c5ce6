"""A local token estimate for providers that cannot count tokens."""

from __future__ import annotations

from typing import Any

from router.types import JSONObject

_CHARS_PER_TOKEN = 4


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(item) for item in value)
    if isinstance(value, dict):
        if value.get("type") == "image":
            return 1600 * _CHARS_PER_TOKEN
        return sum(_text_length(item) for key, item in value.items() if key not in ("type", "cache_control"))
    return 0


def estimate_input_tokens(body: JSONObject) -> int:
    """About four characters a token over system, messages and tools (an estimate, not a tokenizer)."""
    chars = sum(_text_length(body.get(key)) for key in ("system", "messages", "tools"))
    return max(1, chars // _CHARS_PER_TOKEN)
