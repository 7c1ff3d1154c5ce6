"""What every provider adapter offers: pure request building and answer decoding, ending in one Completion.

An adapter knows one wire format (Anthropic Messages, OpenAI Chat Completions, OpenAI Responses). Its stream
decoder sees each server-sent event once, as it passes: it yields hub (Anthropic) events when the caller
translates or buffers, and ends with the complete answer and its usage. A decoder in `observe` mode (a raw
relay of the client's own dialect) decodes only the events that carry usage or end the stream, plus the rest
when the caller needs the whole message (to cache or log it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from router.costs import TokenUsage
from router.protocol.sse import SSEEvent
from router.protocol.streams import EARLY_END
from router.types import Dialect, Endpoint, JSONObject

__all__ = ["EARLY_END", "Completion", "MalformedAnswer", "decode_object", "StreamDecoder", "StreamMode", "WireAdapter"]



class MalformedAnswer(ValueError):
    """An upstream answer or stream event that is not what its wire format promises."""


def decode_object(data: str, what: str) -> JSONObject:
    """One JSON object of a stream event; MalformedAnswer naming `what` when it is not one."""
    try:
        decoded: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedAnswer(f"{what} is not JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise MalformedAnswer(f"{what} is not a JSON object")
    return decoded


@dataclass(frozen=True)
class Completion:
    """A provider's answer decoded once: the hub message (None when incomplete or not needed), usage, log-probs."""

    message: JSONObject | None
    usage: TokenUsage | None
    logprobs: tuple[float, ...] | None = None
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Whether the answer ended normally (a stop reason, no error)."""
        return self.error is None


@dataclass(frozen=True)
class StreamMode:
    """What a stream decoder must produce beyond usage and the end of the stream."""

    events: bool  # hub events for a translating or buffering caller
    message: bool  # the complete hub message
    logprobs: bool = False
    model: str = ""  # the model name hub events carry (the one the client asked for)


class StreamDecoder(Protocol):
    """One provider stream, decoded as it passes."""

    def feed(self, event: SSEEvent) -> list[JSONObject]:
        """Hub events for one server-sent event (empty in observe mode); raises MalformedAnswer."""
        ...

    def finish(self) -> list[JSONObject]:
        """Hub events that close the answer when the stream has ended."""
        ...

    def completion(self) -> Completion:
        """The complete answer and usage (after finish)."""
        ...


class WireAdapter(Protocol):
    """Request building and answer decoding of one wire format."""

    dialect: Dialect

    def path(self, endpoint: Endpoint, query: str) -> str:
        """The upstream path of an endpoint."""
        ...

    def build(self, hub_request: JSONObject, model: str) -> JSONObject:
        """A request body of this wire format from a hub request."""
        ...

    def decode(self, data: object) -> Completion:
        """A complete JSON answer; raises MalformedAnswer."""
        ...

    def decoder(self, mode: StreamMode) -> StreamDecoder:
        """A decoder for one stream of this wire format."""
        ...

