"""Hub (Anthropic) stream events to frames of a client's dialect, with a guaranteed terminal frame."""

from __future__ import annotations

from router.errors import UpstreamError
from router.protocol.chat_stream import AnthropicToChatStream
from router.protocol.responses_response import AnthropicToResponsesStream
from router.protocol.sse import CHAT_DONE, encode_data, encode_named
from router.types import Dialect, JSONObject

EARLY_END = "the upstream stream ended before the answer was complete"


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


def closing_error(dialect: Dialect, kind: str, message: str) -> bytes:
    """The frames that end a stream with an error in a dialect (Chat Completions then sends `[DONE]`)."""
    frame = error_frame(dialect, kind, message)
    return frame + CHAT_DONE if dialect is Dialect.OPENAI_CHAT else frame


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
        return self.feed(hub_error("api_error", EARLY_END))


def rewrite_model(data: JSONObject, model: str) -> None:
    """Show the requested model in a response object or stream event, wherever it names one."""
    if "model" in data:
        data["model"] = model
    for key in ("message", "response"):
        inner = data.get(key)
        if isinstance(inner, dict) and "model" in inner:
            inner["model"] = model
