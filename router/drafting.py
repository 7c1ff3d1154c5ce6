"""Runs a draft to completion (buffered, never shown to the client) and replays an accepted answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from router.bridge import from_hub_message
from router.costs import TokenUsage
from router.errors import UpstreamError
from router.policy.capabilities import adapt_betas, adapt_request, capabilities_of
from router.protocol.anthropic_stream import AnthropicStreamAccumulator, message_to_events
from router.protocol.chat_request import anthropic_request_to_chat
from router.protocol.sse import SSEDecoder
from router.protocol.streams import ClientEncoder, hub_decoder
from router.providers.registry import Target, upstream_headers
from router.types import Answer, ClientCall, Dialect, JSONAnswer, JSONObject, StreamAnswer, client_family

_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


class DraftFailed(Exception):
    """The draft model errored, timed out or broke its stream; the request escalates."""


@dataclass(frozen=True)
class DraftResult:
    """A complete draft answer in the hub format, with what scoring and accounting need."""

    message: JSONObject
    usage: TokenUsage
    logprobs: tuple[float, ...] | None
    latency_ms: float


def _chat_draft_body(call: ClientCall, hub_request: JSONObject, model: str, logprobs: bool) -> JSONObject:
    if call.dialect is Dialect.OPENAI_CHAT:
        body = {**call.body, "model": model}
        limit = capabilities_of(model).max_output_tokens
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int):
                body[key] = min(body[key], limit)
    else:
        body = anthropic_request_to_chat(adapt_request(hub_request, model))
    body.update(stream=True, stream_options={"include_usage": True})
    if logprobs:
        body["logprobs"] = True
    return body


def _chunk_logprobs(data: str) -> list[float]:
    chunk: Any = orjson.loads(data) if data.startswith("{") else None
    values: list[float] = []
    for choice in (chunk or {}).get("choices") or []:
        content = ((choice or {}).get("logprobs") or {}).get("content") or []
        values.extend(float(item["logprob"]) for item in content if isinstance(item, dict) and "logprob" in item)
    return values


async def run_draft(call: ClientCall, target: Target, hub_request: JSONObject, timeout_s: float) -> DraftResult:
    """Ask the draft model for a complete answer; raises DraftFailed (and NotServableByDraft from adaptation)."""
    provider, model = target.provider, target.upstream_model
    headers = upstream_headers(provider, call.headers, call.principal, client_family=client_family(call.dialect))
    wants_logprobs = provider.kind == "openai" and provider.settings.supports_logprobs
    if provider.kind == "anthropic":
        body = {**adapt_request(hub_request, model), "stream": True}
        if "anthropic-beta" in headers:
            headers["anthropic-beta"] = adapt_betas(headers["anthropic-beta"], model) or ""
        path = "/v1/messages?beta=true" if "beta=true" in call.query else "/v1/messages"
    else:
        body = _chat_draft_body(call, hub_request, model, wants_logprobs)
        path = "/v1/chat/completions"
    started = time.perf_counter()
    accumulator = AnthropicStreamAccumulator()
    logprobs: list[float] = []
    try:
        async with asyncio.timeout(timeout_s):
            upstream = await provider.stream(path, orjson.dumps(body), headers)
            decoder, sse = hub_decoder(provider.kind, call.model), SSEDecoder()
            try:
                async for chunk in upstream.chunks():
                    for event in sse.feed(chunk):
                        if wants_logprobs and event.data:
                            logprobs.extend(_chunk_logprobs(event.data))
                        for hub_event in decoder.feed(event):
                            accumulator.feed(hub_event)
            finally:
                upstream.close()
            for hub_event in decoder.finish():
                accumulator.feed(hub_event)
    except TimeoutError as exc:
        raise DraftFailed(f"draft {model} timed out after {timeout_s:g}s") from exc
    except UpstreamError as exc:
        raise DraftFailed(f"draft {model} failed: {exc.message}") from exc
    if accumulator.error is not None or not accumulator.stopped:
        raise DraftFailed(f"draft {model} did not complete its answer")
    message = accumulator.message()
    usage = TokenUsage.from_anthropic(message.get("usage") or {})
    latency_ms = (time.perf_counter() - started) * 1000.0
    return DraftResult(message, usage, tuple(logprobs) if logprobs else None, latency_ms)


def replay_answer(call: ClientCall, message: JSONObject, headers: dict[str, str]) -> Answer:
    """An accepted draft as one clean answer in the client's dialect, streamed if the client streams."""
    if not call.stream:
        body = orjson.dumps(from_hub_message(call, message))
        return JSONAnswer(200, {"content-type": "application/json", **headers}, body)
    named = {**message, "model": call.model}
    encoder = ClientEncoder(call.dialect, call.model, call.body)

    async def frames() -> AsyncIterator[bytes]:
        for event in message_to_events(named):
            for frame in encoder.feed(event):
                yield frame
        for frame in encoder.finish():
            yield frame

    return StreamAnswer(200, {**_SSE_HEADERS, **headers}, frames())
