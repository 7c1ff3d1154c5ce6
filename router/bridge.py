"""Calls a provider for a client call: raw forwarding in the same dialect, complete translation across."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from router.errors import InvalidRequestError, UpstreamError, UpstreamStatusError
from router.protocol.chat_request import anthropic_request_to_chat, chat_request_to_anthropic
from router.protocol.chat_response import anthropic_response_to_chat, chat_response_to_anthropic
from router.protocol.responses_request import responses_request_to_anthropic
from router.protocol.responses_response import anthropic_response_to_responses
from router.protocol.sse import SSEDecoder
from router.protocol.streams import (
    ClientEncoder,
    HubDecoder,
    RawRelay,
    client_encoder,
    hub_decoder,
    rewrite_model,
)
from router.protocol.tokens import estimate_input_tokens
from router.providers.base import Provider, UpstreamStream
from router.providers.registry import Target, upstream_headers
from router.types import (
    Answer,
    ClientCall,
    Dialect,
    Endpoint,
    JSONAnswer,
    JSONObject,
    StreamAnswer,
    client_family,
)

_JSON = {"content-type": "application/json"}
_SSE = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


def is_same_dialect(dialect: Dialect, provider: Provider) -> bool:
    """Whether the provider speaks the client's own dialect, so the raw body can be forwarded."""
    if dialect is Dialect.ANTHROPIC:
        return provider.kind == "anthropic"
    if dialect is Dialect.OPENAI_RESPONSES:
        return provider.kind == "openai" and provider.settings.supports_responses
    return provider.kind == "openai"


def _upstream_path(dialect: Dialect, endpoint: Endpoint, query: str) -> str:
    paths = {
        Endpoint.MESSAGES: "/v1/messages",
        Endpoint.COUNT_TOKENS: "/v1/messages/count_tokens",
        Endpoint.CHAT: "/v1/chat/completions",
        Endpoint.RESPONSES: "/v1/responses",
    }
    path = paths[endpoint]
    return f"{path}?{query}" if query and dialect is Dialect.ANTHROPIC else path


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
    """A complete Anthropic message as a response in the client's dialect, naming the requested model."""
    if call.dialect is Dialect.OPENAI_CHAT:
        return anthropic_response_to_chat(message, call.model)
    if call.dialect is Dialect.OPENAI_RESPONSES:
        return anthropic_response_to_responses(message, call.model, call.body)
    converted = dict(message)
    converted["model"] = call.model
    return converted


class Bridge:
    """One upstream call per client call, in whichever direction the dialects require."""

    async def forward(self, call: ClientCall, target: Target) -> Answer:
        """Serve the call from the target and answer in the client's dialect."""
        if call.endpoint is Endpoint.COUNT_TOKENS and target.provider.kind != "anthropic":
            count = estimate_input_tokens(call.body)
            return JSONAnswer(200, {**_JSON, "x-cascadeflow-token-count": "estimate"},
                              orjson.dumps({"input_tokens": count}))
        if is_same_dialect(call.dialect, target.provider):
            return await self._forward_raw(call, target)
        return await self._forward_translated(call, target)

    def _headers(self, call: ClientCall, target: Target) -> dict[str, str]:
        return upstream_headers(target.provider, call.headers, call.principal,
                                client_family=client_family(call.dialect))

    async def _forward_raw(self, call: ClientCall, target: Target) -> Answer:
        renamed = target.upstream_model != call.model
        body = call.raw_body
        if renamed:
            body = orjson.dumps({**call.body, "model": target.upstream_model})
        path = _upstream_path(call.dialect, call.endpoint, call.query)
        headers = self._headers(call, target)
        if call.stream and call.endpoint is not Endpoint.COUNT_TOKENS:
            upstream = await target.provider.stream(path, body, headers)
            relay = RawRelay(call.dialect, call.model if renamed else None)
            return StreamAnswer(upstream.status, _stream_headers(upstream), relay.frames(upstream.chunks()))
        reply = await target.provider.request("POST", path, body, headers)
        payload = reply.body
        if renamed and call.endpoint is not Endpoint.COUNT_TOKENS:
            data = orjson.loads(payload)
            if isinstance(data, dict):
                rewrite_model(data, call.model)
                payload = orjson.dumps(data)
        return JSONAnswer(reply.status, {**reply.headers, **_JSON}, payload)

    async def _forward_translated(self, call: ClientCall, target: Target) -> Answer:
        hub = to_hub_request(call)
        hub["model"] = target.upstream_model
        provider = target.provider
        if provider.kind == "anthropic":
            path, upstream_body = "/v1/messages", hub
        else:
            path, upstream_body = "/v1/chat/completions", anthropic_request_to_chat(hub)
        headers = self._headers(call, target)
        encoded = orjson.dumps(upstream_body)
        if call.stream:
            upstream = await provider.stream(path, encoded, headers)
            decoder = hub_decoder(provider.kind, call.model)
            encoder = client_encoder(call.dialect, call.model, call.body)
            frames = _translated_frames(upstream, decoder, encoder)
            return StreamAnswer(upstream.status, _stream_headers(upstream), frames)
        reply = await provider.request("POST", path, encoded, headers)
        data = orjson.loads(reply.body)
        message = data if provider.kind == "anthropic" else chat_response_to_anthropic(data, call.model)
        body = orjson.dumps(from_hub_message(call, message))
        return JSONAnswer(reply.status, {**_passable(reply.headers), **_JSON}, body)


def _passable(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in ("content-type",)}


def _stream_headers(upstream: UpstreamStream) -> dict[str, str]:
    return {**_passable(upstream.headers), **_SSE}


async def _translated_frames(upstream: UpstreamStream, decoder: HubDecoder,
                             encoder: ClientEncoder) -> AsyncIterator[bytes]:
    sse = SSEDecoder()
    try:
        async for chunk in upstream.chunks():
            for event in sse.feed(chunk):
                for hub_event in decoder.feed(event):
                    for frame in encoder.feed(hub_event):
                        yield frame
        for event in sse.flush():
            for hub_event in decoder.feed(event):
                for frame in encoder.feed(hub_event):
                    yield frame
        for hub_event in decoder.finish():
            for frame in encoder.feed(hub_event):
                yield frame
    except UpstreamError as exc:
        for frame in encoder.fail(exc):
            yield frame
    finally:
        upstream.close()
    for frame in encoder.finish():
        yield frame


__all__ = ["Bridge", "UpstreamStatusError", "from_hub_message", "is_same_dialect", "to_hub_request"]
