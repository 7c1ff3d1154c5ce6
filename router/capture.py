"""Recovers the complete answer (as a hub message) from what was sent to the client, JSON or stream."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from router.protocol.anthropic_stream import AnthropicStreamAccumulator
from router.protocol.chat_response import chat_response_to_anthropic
from router.protocol.chat_stream import ChatToAnthropicStream
from router.protocol.sse import SSEDecoder
from router.types import Dialect, JSONObject

logger = logging.getLogger("router.capture")

OnComplete = Callable[[JSONObject | None], Awaitable[None]]


def responses_to_hub(response: JSONObject) -> JSONObject:
    """A Responses API response object as an Anthropic message (for caching and accounting)."""
    content: list[JSONObject] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    content.append({"type": "text", "text": str(part.get("text", ""))})
        elif item.get("type") == "function_call":
            try:
                arguments: Any = orjson.loads(str(item.get("arguments") or "{}"))
            except orjson.JSONDecodeError:
                arguments = {}
            content.append({"type": "tool_use", "id": item.get("call_id"), "name": item.get("name"),
                            "input": arguments})
    usage = response.get("usage") or {}
    cached = int(((usage.get("input_tokens_details") or {}).get("cached_tokens")) or 0)
    if any(block["type"] == "tool_use" for block in content):
        stop = "tool_use"
    elif response.get("status") == "incomplete":
        stop = "max_tokens"
    else:
        stop = "end_turn"
    return {"id": str(response.get("id", "")), "type": "message", "role": "assistant",
            "model": response.get("model"), "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": int(usage.get("input_tokens") or 0) - cached, "cache_read_input_tokens": cached,
                      "cache_creation_input_tokens": 0, "output_tokens": int(usage.get("output_tokens") or 0)}}


def hub_message_from_json(dialect: Dialect, body: bytes) -> JSONObject | None:
    """The hub message of a complete JSON answer in a client dialect, or None when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    if dialect is Dialect.ANTHROPIC:
        return data if data.get("type") == "message" else None
    if dialect is Dialect.OPENAI_CHAT:
        return chat_response_to_anthropic(data, str(data.get("model", ""))) if data.get("choices") else None
    return responses_to_hub(data) if data.get("object") == "response" else None


class StreamCapture:
    """Decodes the client's own frames as they pass and rebuilds the complete answer at the end."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._sse = SSEDecoder()
        self._accumulator = AnthropicStreamAccumulator()
        self._chat = ChatToAnthropicStream("") if dialect is Dialect.OPENAI_CHAT else None
        self._final_response: JSONObject | None = None
        self._chat_finished = False
        self._failed = False

    def feed(self, frame: bytes) -> None:
        """Observe one frame."""
        for event in self._sse.feed(frame):
            if not event.data:
                continue
            if event.data.strip() == "[DONE]":
                self._chat_finished = True
                continue
            data = orjson.loads(event.data)
            if not isinstance(data, dict):
                continue
            if self._dialect is Dialect.ANTHROPIC:
                self._accumulator.feed(data)
            elif self._chat is not None:
                if "error" in data:
                    self._failed = True
                if any(isinstance(c, dict) and c.get("finish_reason") for c in data.get("choices") or []):
                    self._chat_finished = True
                for hub_event in self._chat.feed(data):
                    self._accumulator.feed(hub_event)
            elif data.get("type") == "response.completed" and isinstance(data.get("response"), dict):
                self._final_response = data["response"]

    def message(self) -> JSONObject | None:
        """The complete answer, or None when the stream did not complete."""
        if self._dialect is Dialect.OPENAI_RESPONSES:
            return responses_to_hub(self._final_response) if self._final_response else None
        if self._chat is not None:
            if self._failed or not self._chat_finished:
                return None
            for hub_event in self._chat.finish():
                self._accumulator.feed(hub_event)
        if self._accumulator.error is not None or not self._accumulator.stopped:
            return None
        return self._accumulator.message()


async def captured(frames: AsyncIterator[bytes], dialect: Dialect, on_complete: OnComplete) -> AsyncIterator[bytes]:
    """Relay frames unchanged, then hand the rebuilt answer (None if broken or cut off) to on_complete."""
    capture = StreamCapture(dialect)
    broken = finished = False
    try:
        async for frame in frames:
            if not broken:
                try:
                    capture.feed(frame)
                except (orjson.JSONDecodeError, ValueError, KeyError, TypeError):
                    logger.debug("could not decode a relayed frame; the answer will not be captured")
                    broken = True
            yield frame
        finished = True
    finally:  # a client that hangs up still gets its request accounted for (with no answer)
        await on_complete(capture.message() if finished and not broken else None)
