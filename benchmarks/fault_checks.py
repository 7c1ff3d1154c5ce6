"""What `faults.py` accepts as an answer: pure checks of one client response in its dialect.

A response is `ok` (a whole answer), `error_json` (an error status with a well-formed error body of the
client's dialect: Anthropic `{"type": "error", "error": {"type", "message"}}`, OpenAI `{"error": {"message",
"type"}}`), `error_event` (a stream that ends with the dialect's error event and nothing after it) or one of the
failures: `status_500` (the proxy's own crash), `bad_body` (anything else: a half answer, an event that is not
JSON, a stream without its terminal event, an answer after an error). The load adds `broken` (the connection
to the proxy broke) and `hung` (no answer within the client's timeout).
"""

from __future__ import annotations

import json
from typing import Any, Literal

Dialect = Literal["anthropic", "openai_chat", "openai_responses"]
GOOD = ("ok", "error_json", "error_event")
BAD = ("status_500", "bad_body", "broken", "hung")
_RESPONSES_DONE = frozenset({"response.completed", "response.incomplete"})


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each event of an SSE body; comments skipped, data lines joined."""
    events: list[tuple[str | None, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if name is not None or data:
            events.append((name, "\n".join(data)))
    return events


def is_error(dialect: Dialect, data: Any) -> bool:
    """Whether a JSON value is an error body (or error event) of the dialect."""
    if not isinstance(data, dict):
        return False
    if dialect == "anthropic":
        error = data.get("error")
        return data.get("type") == "error" and isinstance(error, dict) and isinstance(error.get("type"), str) \
            and isinstance(error.get("message"), str)
    if dialect == "openai_responses" and data.get("type") == "error":  # the Responses stream's error event
        return isinstance(data.get("message"), str)
    error = data.get("error")
    return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


def is_answer(dialect: Dialect, data: Any) -> bool:
    """Whether a JSON value is a whole answer of the dialect."""
    if not isinstance(data, dict):
        return False
    if dialect == "anthropic":
        return data.get("type") == "message" and isinstance(data.get("content"), list)
    if dialect == "openai_chat":
        return data.get("object") == "chat.completion" and bool(data.get("choices"))
    return data.get("object") == "response" and isinstance(data.get("output"), list)


def classify_json(dialect: Dialect, status: int, body: bytes) -> str:
    """A JSON response (or a stream refused before its first byte)."""
    if status == 500:
        return "status_500"
    try:
        data = json.loads(body)
    except ValueError:
        return "bad_body"
    if status == 200:
        return "ok" if is_answer(dialect, data) else "bad_body"
    return "error_json" if status >= 400 and is_error(dialect, data) else "bad_body"


def classify_stream(dialect: Dialect, body: bytes) -> str:
    """A 200 event stream: whole, or ended by one error event."""
    payloads: list[Any] = []
    for _, data in sse_events(body.decode("utf-8", "replace")):
        if dialect == "openai_chat" and data == "[DONE]":
            payloads.append("[DONE]")
            continue
        try:
            payloads.append(json.loads(data))
        except ValueError:
            return "bad_body"
    if not payloads or not all(isinstance(item, dict) for item in payloads[:-1]):
        return "bad_body"
    *before, last = payloads
    if dialect == "openai_responses" and before and is_error(dialect, before[-1]) and isinstance(last, dict) \
            and last.get("type") == "response.failed":
        before = before[:-1]  # the Responses API's failure: an `error` event, then `response.failed`
    if any(is_error(dialect, item) for item in before):
        return "bad_body"  # something came after an error
    if is_error(dialect, last):
        return "error_event"
    if dialect == "anthropic":
        whole = before and before[0].get("type") == "message_start" and last.get("type") == "message_stop"
    elif dialect == "openai_chat":
        whole = bool(before) and last == "[DONE]" and all(item.get("object") == "chat.completion.chunk"
                                                           for item in before)
    else:
        whole = isinstance(last, dict) and last.get("type") in _RESPONSES_DONE
        if isinstance(last, dict) and last.get("type") == "response.failed":
            return "error_event"
    return "ok" if whole else "bad_body"


def classify(dialect: Dialect, stream: bool, status: int, content_type: str, body: bytes) -> str:
    """One response's category (see the module docstring)."""
    if stream and status == 200:
        return classify_stream(dialect, body) if content_type.startswith("text/event-stream") else "bad_body"
    return classify_json(dialect, status, body)
