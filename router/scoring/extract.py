"""Read the parts of a hub (Anthropic Messages) request and answer that the measures look at."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from router.types import JSONObject

_WORD = re.compile(r"\w+(?:['’]\w+)*")
_WRITTEN_CALL = re.compile(r'\{\s*"name"\s*:')
_WRITTEN_CALLS_READ = 50
"""At most this many places where a written call may start are parsed (each parse may read to the text's end)."""
_JSON = json.JSONDecoder()


def words(text: str) -> list[str]:
    """The lower-cased words of a text."""
    return [w.lower() for w in _WORD.findall(text)]


def _blocks(content: Any) -> list[JSONObject]:
    """A message's content as a list of blocks (a bare string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _text_of(content: Any) -> str:
    """The joined text blocks of a content value."""
    parts = [b["text"] for b in _blocks(content) if b.get("type") == "text" and isinstance(b.get("text"), str)]
    return "\n".join(parts)


def answer_text(answer: JSONObject) -> str:
    """The visible text of a draft answer (text blocks only; thinking is not shown as the answer)."""
    return _text_of(answer.get("content"))


def tool_uses(answer: JSONObject) -> list[JSONObject]:
    """The client tool calls (``tool_use`` blocks) of a draft answer."""
    return [b for b in _blocks(answer.get("content")) if b.get("type") == "tool_use"]


def any_tool_uses(answer: JSONObject) -> list[JSONObject]:
    """Every tool call of a draft answer, client or server side (``tool_use``, ``server_tool_use``, ...)."""
    return [b for b in _blocks(answer.get("content")) if str(b.get("type", "")).endswith("tool_use")]


def stop_reason(answer: JSONObject) -> str | None:
    """The answer's stop reason, if any."""
    value = answer.get("stop_reason")
    return value if isinstance(value, str) else None


def question_text(request: JSONObject) -> str:
    """The text of the last user message (the question the draft answers)."""
    messages = request.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def output_schema(request: JSONObject) -> tuple[bool, Any]:
    """Whether the request asked for JSON output with a schema, and that schema.

    Reads ``output_config.format`` (and the older beta field ``output_format``) of type ``json_schema``.
    """
    fmt: Any = None
    config = request.get("output_config")
    if isinstance(config, dict):
        fmt = config.get("format")
    if fmt is None:
        fmt = request.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and "schema" in fmt:
        return True, fmt["schema"]
    return False, None


def request_tools(request: JSONObject) -> dict[str, JSONObject]:
    """The request's tools by name."""
    tools = request.get("tools")
    if not isinstance(tools, list):
        return {}
    return {t["name"]: t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)}


def written_tool_calls(answer: JSONObject, tools: dict[str, JSONObject]) -> list[str]:
    """The request tools the answer's text calls in writing instead of with ``tool_use`` blocks: a JSON object
    ``{"name": <a request tool>, "arguments": {...}}`` (or ``"parameters"``), bare or in a code fence or
    ``<tool_call>`` tags. Small local models (Qwen2.5-Coder) write their calls so, and llama.cpp then passes them
    on as plain text."""
    text, end = answer_text(answer), 0
    names: list[str] = []
    for found in itertools.islice(_WRITTEN_CALL.finditer(text), _WRITTEN_CALLS_READ):
        if found.start() < end:
            continue  # inside a call already read
        try:
            value, end = _JSON.raw_decode(text, found.start())
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            continue
        name = value.get("name") if isinstance(value, dict) else None
        arguments = value.get("arguments", value.get("parameters")) if isinstance(value, dict) else None
        if isinstance(name, str) and name in tools and isinstance(arguments, dict | str):
            names.append(name)
    return names


def tool_choice(request: JSONObject) -> tuple[str | None, str | None]:
    """The request's tool_choice type (auto, any, tool, none) and, for ``tool``, the forced tool's name."""
    choice = request.get("tool_choice")
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        return None, None
    name = choice.get("name")
    return choice["type"], name if isinstance(name, str) else None
