"""Stream plumbing: provider events to hub (Anthropic) events, hub events to client frames, raw relays."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol

import orjson

from router.errors import UpstreamError
from router.protocol.chat_stream import AnthropicToChatStream, ChatToAnthropicStream
from router.protocol.responses_response import AnthropicToResponsesStream
from router.protocol.sse import CHAT_DONE, SSEDecoder, SSEEvent, encode_data, encode_named
from router.types import Dialect, JSONObject

_EARLY_END = "the upstream stream ended before the answer was complete"
_TERMINAL_MARKERS = {
    Dialect.ANTHROPIC: re.compile(rb"event: ?(message_stop|error)\b|\"type\": ?\"message_stop\""),
    Dialect.OPENAI_CHAT: re.compile(rb"\[DONE\]|\"finish_reason\": ?\"|\"error\": ?\{"),
    Dialect.OPENAI_RESPONSES: re.compile(rb"response\.(completed|failed|incomplete)|event: ?error\b"),
}


def hub_error(kind: str, message: str) -> JSONObject:
    """An Anthropic `error` stream event."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_frame(dialect: Dialect, kind: str, message: str) -> bytes:
    """A final error frame in a client's dialect."""
    if dialect is Dialect.ANTHROPIC:
        return encode_named(hub_error(kind, message))
    if dialect is Dialect.OPENAI_CHAT:
        return encode_data({"error": {"message": message, "type": kind, "param": None, "code": None}})
    return encode_named({"type": "error", "code": kind, "message": message, "param": None})


class HubDecoder(Protocol):
    """Turns a provider's SSE events into hub (Anthropic) events."""

    def feed(self, event: SSEEvent) -> list[JSONObject]: ...

    def finish(self) -> list[JSONObject]: ...


class AnthropicHubDecoder:
    """An Anthropic provider's events are hub events already."""

    def feed(self, event: SSEEvent) -> list[JSONObject]:
        """Decode one event."""
        if not event.data:
            return []
        data = orjson.loads(event.data)
        return [data] if isinstance(data, dict) else []

    def finish(self) -> list[JSONObject]:
        """Nothing to close."""
        return []


class ChatHubDecoder:
    """An OpenAI-compatible provider's chunks, translated into hub events."""

    def __init__(self, model: str) -> None:
        self._converter = ChatToAnthropicStream(model)
        self._finished = False
        self._saw_finish_reason = False

    def feed(self, event: SSEEvent) -> list[JSONObject]:
        """Decode one chunk (or `[DONE]`)."""
        if self._finished or not event.data:
            return []
        if event.data.strip() == "[DONE]":
            self._finished = True
            return self._converter.finish()
        chunk = orjson.loads(event.data)
        if not isinstance(chunk, dict):
            return []
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self._saw_finish_reason = True
        return self._converter.feed(chunk)

    def finish(self) -> list[JSONObject]:
        """Close the message if the provider ended without `[DONE]` after a finish reason."""
        if self._finished:
            return []
        self._finished = True
        if not self._saw_finish_reason:
            return [hub_error("api_error", _EARLY_END)]
        return self._converter.finish()


def hub_decoder(provider_kind: str, model: str) -> HubDecoder:
    """The decoder for a provider kind."""
    return AnthropicHubDecoder() if provider_kind == "anthropic" else ChatHubDecoder(model)


class ClientEncoder:
    """Turns hub events into frames of the client's dialect and guarantees a terminal frame."""

    def __init__(self, dialect: Dialect, model: str, request: JSONObject) -> None:
        self._dialect = dialect
        self._terminated = False
        self._chat: AnthropicToChatStream | None = None
        self._responses: AnthropicToResponsesStream | None = None
        if dialect is Dialect.OPENAI_CHAT:
            options = request.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            self._chat = AnthropicToChatStream(model, include_usage=include_usage)
        elif dialect is Dialect.OPENAI_RESPONSES:
            self._responses = AnthropicToResponsesStream(model, request)

    def feed(self, event: JSONObject) -> list[bytes]:
        """Frames for one hub event."""
        if self._terminated:
            return []
        kind = event.get("type")
        if kind in ("message_stop", "error"):
            self._terminated = True
        if self._chat is not None:
            frames = [encode_data(chunk) for chunk in self._chat.feed(event)]
            if kind == "message_stop":
                frames.append(CHAT_DONE)
            return frames
        if self._responses is not None:
            return [encode_named(item) for item in self._responses.feed(event)]
        return [encode_named(event)]

    def fail(self, error: UpstreamError) -> list[bytes]:
        """Frames that end the stream with an error."""
        return self.feed(hub_error(error.kind, error.message))

    def finish(self) -> list[bytes]:
        """An error frame if the stream never reached its end."""
        if self._terminated:
            return []
        return self.feed(hub_error("api_error", _EARLY_END))


def client_encoder(dialect: Dialect, model: str, request: JSONObject) -> ClientEncoder:
    """The encoder for a client's dialect."""
    return ClientEncoder(dialect, model, request)


class RawRelay:
    """Relays a same-dialect stream unbuffered, renaming the model if needed, ending with an error on failure."""

    def __init__(self, dialect: Dialect, rename_to: str | None) -> None:
        self._dialect = dialect
        self._rename_to = rename_to
        self._marker = _TERMINAL_MARKERS[dialect]

    async def frames(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The client's frames."""
        tail = b""
        terminated = False
        decoder = SSEDecoder() if self._rename_to is not None else None
        try:
            async for chunk in chunks:
                if not terminated and self._marker.search(tail + chunk):
                    terminated = True
                tail = chunk[-64:]
                yield chunk if decoder is None else self._renamed(decoder.feed(chunk))
            if decoder is not None:
                yield self._renamed(decoder.flush())
        except UpstreamError as exc:
            yield error_frame(self._dialect, exc.kind, exc.message)
            return
        if not terminated:
            yield error_frame(self._dialect, "api_error", _EARLY_END)

    def _renamed(self, events: list[SSEEvent]) -> bytes:
        out = []
        for event in events:
            data = event.data
            if data and data[0] == "{" and self._rename_to is not None:
                decoded = orjson.loads(data)
                if isinstance(decoded, dict):
                    rewrite_model(decoded, self._rename_to)
                    data = orjson.dumps(decoded).decode()
            prefix = f"event: {event.event}\n" if event.event else ""
            out.append(f"{prefix}data: {data}\n\n".encode())
        return b"".join(out)


def rewrite_model(data: JSONObject, model: str) -> None:
    """Show the requested model in a response object or stream event, wherever it names one."""
    if "model" in data:
        data["model"] = model
    for key in ("message", "response"):
        inner = data.get(key)
        if isinstance(inner, dict) and "model" in inner:
            inner["model"] = model
