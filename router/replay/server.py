"""A Starlette app that answers like the Anthropic and OpenAI APIs, from any AnswerSource."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from router.replay import render
from router.replay.answers import Answer, AnswerSource, Fault, UpstreamDialect, UpstreamRequest

JSONObject = dict[str, Any]


class StreamBroken(Exception):
    """Raised inside a stream to drop the connection without a terminal event."""


def _encode(dialect: UpstreamDialect, event: JSONObject) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    if dialect == "openai_chat":
        return f"data: {data}\n\n".encode()
    name = event.get("type", "error")
    return f"event: {name}\ndata: {data}\n\n".encode()


def _events(dialect: UpstreamDialect, answer: Answer, model: str, body: JSONObject) -> list[JSONObject]:
    if dialect == "anthropic":
        return render.anthropic_events(answer, model)
    if dialect == "openai_chat":
        return render.chat_chunks(answer, model, body)
    return render.responses_events(answer, model, body)


def _complete(dialect: UpstreamDialect, answer: Answer, model: str, body: JSONObject) -> JSONObject:
    if dialect == "anthropic":
        return render.anthropic_message(answer, model)
    if dialect == "openai_chat":
        return render.chat_completion(answer, model, body)
    return render.responses_response(answer, model, body)


def _request_id_header(dialect: UpstreamDialect) -> dict[str, str]:
    name = "request-id" if dialect == "anthropic" else "x-request-id"
    return {name: "req_" + uuid.uuid4().hex[:20]}


def create_upstream_app(source: AnswerSource, *, stream_delay_s: float = 0.0, latency_s: float = 0.0) -> Starlette:
    """An upstream server: /v1/messages(+count_tokens), /v1/chat/completions, /v1/responses, /v1/models."""

    async def record(request: Request) -> tuple[JSONObject, bytes]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {}
        request.app.state.received.append({
            "method": request.method, "path": request.url.path, "query": request.url.query,
            "headers": {key.lower(): value for key, value in request.headers.items()}, "body": body, "raw": raw})
        return body if isinstance(body, dict) else {}, raw

    async def serve(request: Request, dialect: UpstreamDialect) -> Response:
        body, _ = await record(request)
        model = str(body.get("model", "unknown"))
        upstream_request = UpstreamRequest(dialect, model, body, dict(request.headers), request.url.path,
                                           request.url.query)
        outcome = await source.answer(upstream_request)
        fault = outcome if isinstance(outcome, Fault) else None
        answer = outcome if isinstance(outcome, Answer) else (fault.answer if fault else None) or Answer()
        if latency_s:
            await asyncio.sleep(latency_s)
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        headers = _request_id_header(dialect)
        if fault is not None and fault.status is not None:
            if fault.retry_after is not None:
                headers["retry-after"] = fault.retry_after
            message = f"injected fault: HTTP {fault.status}"
            return JSONResponse(render.error_body(dialect, fault.status, message), fault.status, headers)
        if body.get("stream") is not True:
            return JSONResponse(_complete(dialect, answer, model, body), headers=headers)
        events = _events(dialect, answer, model, body)
        return StreamingResponse(_stream(dialect, events, fault), headers=headers, media_type="text/event-stream")

    async def _stream(dialect: UpstreamDialect, events: list[JSONObject], fault: Fault | None) -> AsyncIterator[bytes]:
        for number, event in enumerate(events):
            if fault is not None and fault.break_stream_after == number:
                raise StreamBroken("injected: connection dropped mid-stream")
            if fault is not None and fault.error_event_after == number:
                yield _encode(dialect, render.stream_error_event(dialect, "injected: overloaded mid-stream"))
                return
            if stream_delay_s and number:
                await asyncio.sleep(stream_delay_s)
            yield _encode(dialect, event)
        if dialect == "openai_chat":
            yield b"data: [DONE]\n\n"

    async def messages(request: Request) -> Response:
        return await serve(request, "anthropic")

    async def chat(request: Request) -> Response:
        return await serve(request, "openai_chat")

    async def responses(request: Request) -> Response:
        return await serve(request, "openai_responses")

    async def count_tokens(request: Request) -> Response:
        body, raw = await record(request)
        sized = {key: body.get(key) for key in ("system", "messages", "tools")}
        return JSONResponse({"input_tokens": max(1, len(json.dumps(sized)) // 4)},
                            headers=_request_id_header("anthropic"))

    async def models(request: Request) -> Response:
        await record(request)
        names = ["claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5", "gpt-4o-mini"]
        data = [{"id": name, "object": "model", "created": 1_750_000_000, "owned_by": "replay", "type": "model",
                 "display_name": name, "created_at": "2025-06-15T00:00:00Z"} for name in names]
        return JSONResponse({"object": "list", "data": data, "has_more": False, "first_id": names[0],
                             "last_id": names[-1]})

    app = Starlette(routes=[
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ])
    app.state.received = []
    return app
