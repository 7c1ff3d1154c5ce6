"""The Anthropic Messages wire: its answers and stream events are hub messages and events already."""

from __future__ import annotations

from router.protocol.anthropic_stream import AnthropicStreamAccumulator
from router.protocol.hub import usage_of
from router.protocol.sse import SSEEvent
from router.providers.wire import EARLY_END, Completion, MalformedAnswer, StreamMode, decode_object
from router.types import Dialect, Endpoint, JSONObject

_PATHS = {Endpoint.MESSAGES: "/v1/messages", Endpoint.COUNT_TOKENS: "/v1/messages/count_tokens"}
_OBSERVED = frozenset({"message_start", "message_delta", "message_stop", "error"})


class AnthropicStreamDecoder:
    """Anthropic events: passed on as hub events, accumulated into the complete message."""

    def __init__(self, mode: StreamMode) -> None:
        self._mode = mode
        self._accumulator = AnthropicStreamAccumulator()

    def feed(self, event: SSEEvent) -> list[JSONObject]:
        """Decode one event (in observe mode, only those with usage or an end, unless the message is needed)."""
        if not event.data or self._accumulator.stopped or self._accumulator.error is not None:
            return []
        if not (self._mode.events or self._mode.message) and event.event is not None \
                and event.event not in _OBSERVED:
            return []
        data = decode_object(event.data, "an Anthropic stream event")
        self._accumulator.feed(data)
        return [data] if self._mode.events else []

    def finish(self) -> list[JSONObject]:
        """Nothing to close: an Anthropic stream ends itself."""
        return []

    def completion(self) -> Completion:
        """The message accumulated from the events."""
        accumulated = self._accumulator
        message = accumulated.message() if accumulated.started else None
        usage = usage_of(message) if message is not None else None
        if accumulated.error is not None:
            return Completion(None, usage, error=str(accumulated.error.get("message") or "upstream error"))
        if not accumulated.stopped:
            return Completion(None, usage, error=EARLY_END)
        return Completion(message if self._mode.message or self._mode.events else None, usage)


class AnthropicWire:
    """Anthropic Messages (`/v1/messages`)."""

    dialect = Dialect.ANTHROPIC

    def path(self, endpoint: Endpoint, query: str) -> str:
        """Messages and count_tokens keep the client's query (`?beta=true`)."""
        path = _PATHS.get(endpoint, "/v1/messages")
        return f"{path}?{query}" if query else path

    def build(self, hub_request: JSONObject, model: str) -> JSONObject:
        """The hub request is this wire's request."""
        return {**hub_request, "model": model}

    def decode(self, data: object) -> Completion:
        """A Messages response object."""
        if not isinstance(data, dict) or data.get("type") != "message" or not isinstance(data.get("content"), list):
            raise MalformedAnswer("the Anthropic answer is not a message object")
        return Completion(data, usage_of(data))

    def decoder(self, mode: StreamMode) -> AnthropicStreamDecoder:
        """A decoder for one Messages stream."""
        return AnthropicStreamDecoder(mode)
