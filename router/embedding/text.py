"""Which text of a request is embedded: the last user turn, bounded, with context when it is referential."""

from __future__ import annotations

import re
from typing import Any

from router.types import JSONObject

_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_REFERENTIAL = re.compile(r"\b(he|she|it|they|them|his|her|its|their|this|that|these|those|and|also|again)\b",
                          re.IGNORECASE)
SHORT_TURN_CHARS = 40


def turn_text(content: Any) -> str:
    """The text of a message's content: text blocks only (tool results and thinking ignored, images marked)."""
    if isinstance(content, str):
        return _REMINDER.sub("", content).strip()
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(_REMINDER.sub("", str(block.get("text", ""))).strip())
        elif block.get("type") == "image":
            parts.append("[image]")
    return "\n".join(part for part in parts if part)


def _bounded(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    return text[:half] + " … " + text[-half:]


def embedding_text(request: JSONObject, max_chars: int = 1000) -> str:
    """The last user turn (head and tail when long); a short referential turn gets the previous turn before it.

    The scope of a cache entry already pins the whole earlier conversation, so the context added here only
    helps the learned router tell "and in Python?" from a fresh question; it never decides a cache match alone.
    """
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict) and m.get("role") != "system"]
    user_turns = [index for index, m in enumerate(messages) if m.get("role") == "user" and turn_text(m.get("content"))]
    if not user_turns:
        return ""
    last = user_turns[-1]
    text = turn_text(messages[last].get("content"))
    if len(text) < SHORT_TURN_CHARS and _REFERENTIAL.search(text) and last > 0:
        previous = turn_text(messages[last - 1].get("content"))
        text = _bounded(previous, max_chars // 2) + "\n" + text
    return _bounded(text, max_chars)
