"""Neutral value types shared across the router."""

from __future__ import annotations

import enum
from typing import Any

JSONObject = dict[str, Any]
"""A decoded JSON object as it travels on the wire."""


class Dialect(enum.StrEnum):
    """The API dialect a client speaks or a provider serves."""

    ANTHROPIC = "anthropic"
    OPENAI_CHAT = "openai_chat"
    OPENAI_RESPONSES = "openai_responses"
