"""Anthropic Messages streams: accumulate events into a message, synthesise events from one, encode frames."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import orjson

from router.types import JSONObject

_WORDS_PER_DELTA = 4
_TOOL_INPUT_BLOCKS = ("tool_use", "server_tool_use")
_DELTA_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "server_tool_use",
    "output_tokens_details",
)


def _as_dict(value: Any) -> JSONObject:
    return value if isinstance(value, dict) else {}


def _block_for_delta(kind: Any) -> JSONObject:
    """A best-guess empty block for a delta that arrived without its content_block_start."""
    if kind in ("thinking_delta", "signature_delta"):
        return {"type": "thinking", "thinking": "", "signature": ""}
    if kind == "input_json_delta":
        return {"type": "tool_use", "id": "", "name": "", "input": {}}
    return {"type": "text", "text": ""}


def _parse_input(raw: str, started: Any) -> Any:
    """The tool input from its concatenated partial JSON; the started input when nothing usable arrived."""
    fallback = started if isinstance(started, dict) else {}
    if not raw.strip():
        return fallback
    try:
        parsed = json.loads(raw)
    except ValueError:
        return fallback
    return parsed if isinstance(parsed, dict) else fallback


class AnthropicStreamAccumulator:
    """Builds the complete Anthropic message from its decoded stream events."""

    def __init__(self) -> None:
        self._message: JSONObject | None = None
        self._blocks: dict[int, JSONObject] = {}
        self._json: dict[int, list[str]] = {}
        self._error: JSONObject | None = None
        self._stopped = False

    @property
    def error(self) -> JSONObject | None:
        """The `error` object of an error event, if one arrived."""
        return self._error

    @property
    def started(self) -> bool:
        """Whether `message_start` arrived."""
        return self._message is not None

    @property
    def stopped(self) -> bool:
        """Whether `message_stop` arrived."""
        return self._stopped

    @property
    def stop_reason(self) -> str | None:
        """The stop reason seen so far (set by `message_delta`)."""
        value = (self._message or {}).get("stop_reason")
        return value if isinstance(value, str) else None

    def feed(self, event: JSONObject) -> None:
        """Take one decoded stream event."""
        kind = event.get("type")
        if kind == "message_start":
            self._start(_as_dict(event.get("message")))
        elif kind == "content_block_start":
            index = event.get("index")
            if isinstance(index, int):
                block = copy.deepcopy(_as_dict(event.get("content_block")))
                self._blocks[index] = block
                if block.get("type") in _TOOL_INPUT_BLOCKS:
                    self._json[index] = []
        elif kind == "content_block_delta":
            index = event.get("index")
            if isinstance(index, int):
                self._delta(index, _as_dict(event.get("delta")))
        elif kind == "message_delta":
            self._message_delta(event)
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            error = event.get("error")
            self._error = copy.deepcopy(error) if isinstance(error, dict) else {"type": "api_error",
                                                                                  "message": str(error)}

    def _start(self, message: JSONObject) -> JSONObject:
        base = copy.deepcopy(message)
        for index, block in enumerate(base.pop("content", None) or []):
            if isinstance(block, dict):
                self._blocks.setdefault(index, block)
        base.setdefault("stop_reason", None)
        base.setdefault("stop_sequence", None)
        base["usage"] = _as_dict(base.get("usage"))
        self._message = base
        return base

    def _delta(self, index: int, delta: JSONObject) -> None:
        kind = delta.get("type")
        block = self._blocks.get(index)
        if block is None:
            block = self._blocks[index] = _block_for_delta(kind)
            if block["type"] == "tool_use":
                self._json[index] = []
        if kind == "text_delta":
            block["text"] = str(block.get("text") or "") + str(delta.get("text") or "")
        elif kind == "thinking_delta":
            block["thinking"] = str(block.get("thinking") or "") + str(delta.get("thinking") or "")
        elif kind == "signature_delta":
            block["signature"] = str(delta.get("signature") or "")
        elif kind == "input_json_delta":
            self._json.setdefault(index, []).append(str(delta.get("partial_json") or ""))
        elif kind == "citations_delta":
            citations = block.get("citations")
            if not isinstance(citations, list):
                citations = block["citations"] = []
            citations.append(copy.deepcopy(delta.get("citation")))
        else:
            for key, value in delta.items():
                if key == "type":
                    continue
                current = block.get(key)
                if isinstance(current, str) and isinstance(value, str):
                    block[key] = current + value
                elif isinstance(current, list) and isinstance(value, list):
                    current.extend(copy.deepcopy(value))
                else:
                    block[key] = copy.deepcopy(value)

    def _message_delta(self, event: JSONObject) -> None:
        message = self._message if self._message is not None else self._start({})
        for key, value in _as_dict(event.get("delta")).items():
            message[key] = copy.deepcopy(value)
        usage = message["usage"]
        for key, value in _as_dict(event.get("usage")).items():
            if value is not None:
                usage[key] = copy.deepcopy(value)

    def block(self, index: int) -> JSONObject | None:
        """A copy of one content block as accumulated so far (tool input parsed), or None."""
        block = self._blocks.get(index)
        if block is None:
            return None
        result = copy.deepcopy(block)
        if index in self._json:
            result["input"] = _parse_input("".join(self._json[index]), block.get("input"))
        return result

    def message(self) -> JSONObject:
        """The complete message accumulated so far."""
        base: JSONObject = {"id": "msg_unknown", "type": "message", "role": "assistant", "model": "",
                            "stop_reason": None, "stop_sequence": None, "usage": {}}
        base.update(copy.deepcopy(self._message or {}))
        content = [self.block(index) for index in sorted(self._blocks)]
        base["content"] = [block for block in content if block is not None]
        usage = base["usage"]
        usage.setdefault("input_tokens", 0)
        usage.setdefault("output_tokens", 0)
        return base


def _text_chunks(text: str) -> list[str]:
    """The text split into deltas of a few words each (whitespace kept with the word before it)."""
    pieces = re.findall(r"\s*\S+\s*|\s+", text)
    return ["".join(pieces[i : i + _WORDS_PER_DELTA]) for i in range(0, len(pieces), _WORDS_PER_DELTA)]


def _block_events(index: int, block: JSONObject) -> tuple[JSONObject, list[JSONObject]]:
    """The content_block_start event and the delta events of one complete block."""
    kind = block.get("type")
    deltas: list[JSONObject] = []
    if kind == "text":
        start: JSONObject = {"type": "text", "text": ""}
        text = str(block.get("text") or "")
        deltas = [{"type": "text_delta", "text": chunk} for chunk in _text_chunks(text)]
        for citation in block.get("citations") or []:
            deltas.append({"type": "citations_delta", "citation": copy.deepcopy(citation)})
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        thinking = str(block.get("thinking") or "")
        deltas = [{"type": "thinking_delta", "thinking": chunk} for chunk in _text_chunks(thinking)]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": str(block["signature"])})
    elif kind in _TOOL_INPUT_BLOCKS:
        start = {**copy.deepcopy(block), "input": {}}
        tool_input = block.get("input")
        deltas = [{"type": "input_json_delta",
                   "partial_json": json.dumps(tool_input if isinstance(tool_input, dict) else {},
                                              ensure_ascii=False)}]
    else:
        start = copy.deepcopy(block)
    events = [{"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas]
    return {"type": "content_block_start", "index": index, "content_block": start}, events


def message_to_events(message: JSONObject) -> list[JSONObject]:
    """A complete, valid Anthropic event sequence that reproduces a complete message."""
    usage = _as_dict(message.get("usage"))
    output_tokens = usage.get("output_tokens")
    output_tokens = output_tokens if isinstance(output_tokens, int) else 0
    start_usage = {**copy.deepcopy(usage), "input_tokens": usage.get("input_tokens") or 0,
                   "output_tokens": min(output_tokens, 1)}
    start_usage.pop("output_tokens_details", None)
    started: JSONObject = {"id": "msg_unknown", "type": "message", "role": "assistant", "model": ""}
    started.update({key: copy.deepcopy(value) for key, value in message.items()
                    if key not in ("content", "stop_reason", "stop_sequence", "stop_details", "container")})
    started.update(content=[], stop_reason=None, stop_sequence=None, usage=start_usage)
    events: list[JSONObject] = [{"type": "message_start", "message": started}]
    blocks = [block for block in message.get("content") or [] if isinstance(block, dict)]
    if not blocks:
        events.append({"type": "ping"})
    for index, block in enumerate(blocks):
        start, deltas = _block_events(index, block)
        events.append(start)
        if index == 0:
            events.append({"type": "ping"})
        events.extend(deltas)
        events.append({"type": "content_block_stop", "index": index})
    delta: JSONObject = {"stop_reason": message.get("stop_reason"),
                         "stop_sequence": message.get("stop_sequence")}
    for key in ("stop_details", "container"):
        if message.get(key) is not None:
            delta[key] = copy.deepcopy(message[key])
    delta_usage: JSONObject = {"output_tokens": output_tokens}
    for key in _DELTA_USAGE_KEYS:
        if usage.get(key) is not None:
            delta_usage[key] = copy.deepcopy(usage[key])
    events.append({"type": "message_delta", "delta": delta, "usage": delta_usage})
    events.append({"type": "message_stop"})
    return events


def encode_event(event: JSONObject) -> bytes:
    """One `event: <type>` + `data: <compact json>` SSE frame."""
    name = str(event.get("type", "message")).encode()
    return b"event: " + name + b"\ndata: " + orjson.dumps(event) + b"\n\n"
