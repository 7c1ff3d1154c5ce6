"""Server-sent events: an incremental decoder and the encoders of each dialect's frames."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from router.types import JSONObject


@dataclass(frozen=True)
class SSEEvent:
    """One decoded server-sent event."""

    event: str | None
    data: str


class SSEDecoder:
    """Turns arbitrary byte chunks into complete events (handles \\n, \\r\\n and split frames)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes; return the events completed by them."""
        self._buffer += chunk
        events: list[SSEEvent] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            line = self._buffer[:newline].rstrip(b"\r").decode("utf-8", errors="replace")
            self._buffer = self._buffer[newline + 1 :]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """Return a final event left without its blank line when the stream ends."""
        events = self.feed(b"\n") if self._buffer else []
        event = self._line("")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = SSEEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None


def encode_named(data: JSONObject) -> bytes:
    """An `event: <type>` + `data:` frame (Anthropic and Responses streams)."""
    return b"event: " + str(data.get("type", "message")).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def encode_data(data: JSONObject) -> bytes:
    """A `data:`-only frame (Chat Completions streams)."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


CHAT_DONE = b"data: [DONE]\n\n"
