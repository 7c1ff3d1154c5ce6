"""Client dialects to and from the hub format (Anthropic Messages): requests, complete answers, replayed streams."""

from __future__ import annotations

from router.costs import TokenUsage
from router.errors import InvalidRequestError
from router.protocol.anthropic_stream import message_to_events
from router.protocol.chat_request import chat_request_to_anthropic
from router.protocol.chat_response import anthropic_response_to_chat
from router.protocol.responses_request import responses_request_to_anthropic
from router.protocol.responses_response import anthropic_response_to_responses
from router.protocol.streams import ClientEncoder
from router.types import ClientCall, Dialect, JSONObject


def to_hub_request(call: ClientCall) -> JSONObject:
    """The client's request as an Anthropic Messages request (the hub format)."""
    try:
        if call.dialect is Dialect.OPENAI_CHAT:
            n = call.body.get("n")
            if n not in (None, 1):
                raise InvalidRequestError("n: only 1 is supported when this model is served across dialects",
                                          param="n")
            return chat_request_to_anthropic(call.body)
        if call.dialect is Dialect.OPENAI_RESPONSES:
            return responses_request_to_anthropic(call.body)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc
    return dict(call.body)


def from_hub_message(call: ClientCall, message: JSONObject) -> JSONObject:
    """A complete hub message as a response in the client's dialect, naming the requested model."""
    if call.dialect is Dialect.OPENAI_CHAT:
        return anthropic_response_to_chat(message, call.model)
    if call.dialect is Dialect.OPENAI_RESPONSES:
        return anthropic_response_to_responses(message, call.model, call.body)
    return {**message, "model": call.model}


def message_frames(call: ClientCall, message: JSONObject) -> list[bytes]:
    """A complete hub message as one clean event stream in the client's dialect (a draft or a cached answer)."""
    encoder = ClientEncoder(call.dialect, call.model, call.body)
    frames = [frame for event in message_to_events({**message, "model": call.model}) for frame in encoder.feed(event)]
    return frames + encoder.finish()


def usage_of(message: JSONObject) -> TokenUsage | None:
    """The usage of a hub message, when it has one."""
    usage = message.get("usage")
    return TokenUsage.from_anthropic(usage) if isinstance(usage, dict) else None
