"""A Starlette app answering like the Anthropic and OpenAI APIs from any AnswerSource, recording requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final, TypedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

from router.replay import render
from router.replay.answers import Answer, AnswerSource, Dialect, Fault, UpstreamRequest
from router.replay.render import SSEEvent, new_id

DEFAULT_MODELS: Final = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001",
                         "claude-opus-4-1-20250805", "gpt-5", "gpt-5-codex", "gpt-4o-mini")
MODEL_CREATED: Final = 1735689600
MODEL_CREATED_AT: Final = "2025-01-01T00:00:00Z"
ALL_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class Received(TypedDict):
    """One request as the upstream received it (headers lower-cased, body parsed or None)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw: bytes


class EventStream(StreamingResponse):
    """An SSE response paced by a delay, which can end by dropping the connection (no terminal chunk)."""

    def __init__(self, chunks: Sequence[bytes], *, delay_s: float, abort: bool,
                 headers: Mapping[str, str]) -> None:
        super().__init__(_paced(chunks, delay_s), headers=dict(headers), media_type="text/event-stream")
        self.abort = abort

    async def stream_response(self, send: Send) -> None:
        """Send the events; to abort, return without the final body message: the server drops the link."""
        if not self.abort:
            await super().stream_response(send)
            return
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _paced(chunks: Sequence[bytes], delay_s: float) -> AsyncIterator[bytes]:
    """The chunks with `delay_s` between them."""
    for number, chunk in enumerate(chunks):
        if number and delay_s > 0:
            await asyncio.sleep(delay_s)
        yield chunk


async def _pause(seconds: float) -> None:
    """Sleep when asked to."""
    if seconds > 0:
        await asyncio.sleep(seconds)


def request_id_header(dialect: Dialect) -> dict[str, str]:
    """A fresh request id header: `request-id` (Anthropic) or `x-request-id` (OpenAI)."""
    if dialect == "anthropic":
        return {"request-id": new_id("req_011C", 22)}
    return {"x-request-id": new_id("req_", 32)}


def error_response(dialect: Dialect, status: int, message: str | None = None, *,
                   retry_after: str | None = None) -> JSONResponse:
    """A dialect-correct error reply, with its request id and optional retry-after headers."""
    headers = request_id_header(dialect)
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = render.error_body(dialect, status, message, request_id=headers.get("request-id", ""))
    return JSONResponse(body, status_code=status, headers=headers)


def render_body(dialect: Dialect, answer: Answer, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The non-streaming reply of a dialect, with fresh ids."""
    created = int(time.time())
    if dialect == "anthropic":
        return render.anthropic_message(answer, model, message_id=new_id("msg_01", 22))
    if dialect == "openai_chat":
        completion_id = new_id("chatcmpl-", 29)
        return render.chat_completion(answer, model, body, completion_id=completion_id, created=created)
    return render.responses_response(answer, model, body, response_id=new_id("resp_", 32), created=created)


def render_events(dialect: Dialect, answer: Answer, model: str, body: Mapping[str, Any]) -> list[SSEEvent]:
    """The streaming reply of a dialect, with fresh ids."""
    created = int(time.time())
    if dialect == "anthropic":
        return render.anthropic_events(answer, model, message_id=new_id("msg_01", 22))
    if dialect == "openai_chat":
        return render.chat_chunks(answer, model, body, completion_id=new_id("chatcmpl-", 29), created=created)
    return render.responses_events(answer, model, body, response_id=new_id("resp_", 32), created=created)


def cut_stream(dialect: Dialect, events: Sequence[SSEEvent], fault: Fault) -> tuple[list[bytes], bool]:
    """The wire chunks after applying a fault's mid-stream failure, and whether to drop the connection."""
    last = max(0, len(events) - 1)
    if fault.error_event_after is not None:
        kept = list(events[:max(0, min(fault.error_event_after, last))])
        kept.append(render.stream_error_event(dialect, sequence_number=len(kept)))
        return [event.encode() for event in kept], False
    if fault.break_stream_after is not None:
        return [event.encode() for event in events[:max(0, min(fault.break_stream_after, last))]], True
    return [event.encode() for event in events], False


def _model_entry(model: str) -> dict[str, Any]:
    """A model in the combined Anthropic + OpenAI shape."""
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": "replay", "type": "model",
            "display_name": model, "created_at": MODEL_CREATED_AT}


def create_upstream_app(source: AnswerSource, *, stream_delay_s: float = 0.0, latency_s: float = 0.0,
                        models: Sequence[str] = DEFAULT_MODELS) -> Starlette:
    """An upstream serving /v1/messages (+count_tokens), /v1/chat/completions, /v1/responses, /v1/models."""

    async def record(request: Request) -> Any:
        """Append the request to `app.state.received` and return its parsed body (None if not JSON)."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {key.lower(): value for key, value in request.headers.items()}
        received: list[Received] = request.app.state.received
        received.append(Received(method=request.method, path=request.url.path, query=request.url.query,
                                 headers=headers, body=body, raw=raw))
        return body

    async def serve(request: Request, dialect: Dialect) -> Response:
        """Ask the source, then answer (or fail) in the dialect, streaming when `body.stream` is true."""
        body = await record(request)
        await _pause(latency_s)
        if not isinstance(body, dict):
            return error_response(dialect, 400, "The request body must be a JSON object.")
        model = body["model"] if isinstance(body.get("model"), str) else ""
        headers = {key.lower(): value for key, value in request.headers.items()}
        upstream_request = UpstreamRequest(dialect=dialect, model=model, body=body, headers=headers,
                                           path=request.url.path, query=request.url.query)
        outcome = await source.answer(upstream_request)
        fault = outcome if isinstance(outcome, Fault) else Fault(answer=outcome)
        await _pause(fault.delay_s)
        if fault.status is not None:
            return error_response(dialect, fault.status, retry_after=fault.retry_after)
        answer = fault.answer or Answer()
        if body.get("stream") is not True:
            return JSONResponse(render_body(dialect, answer, model, body), headers=request_id_header(dialect))
        chunks, abort = cut_stream(dialect, render_events(dialect, answer, model, body), fault)
        headers = {**request_id_header(dialect), "cache-control": "no-cache"}
        return EventStream(chunks, delay_s=stream_delay_s, abort=abort, headers=headers)

    async def messages(request: Request) -> Response:
        """POST /v1/messages (any query string)."""
        return await serve(request, "anthropic")

    async def chat_completions(request: Request) -> Response:
        """POST /v1/chat/completions."""
        return await serve(request, "openai_chat")

    async def responses(request: Request) -> Response:
        """POST /v1/responses."""
        return await serve(request, "openai_responses")

    async def count_tokens(request: Request) -> Response:
        """POST /v1/messages/count_tokens: about a token per 4 characters of messages, system and tools."""
        body = await record(request)
        await _pause(latency_s)
        if not isinstance(body, dict):
            return error_response("anthropic", 400, "The request body must be a JSON object.")
        sized = {key: body[key] for key in ("messages", "system", "tools") if key in body}
        return JSONResponse({"input_tokens": max(1, len(json.dumps(sized)) // 4)},
                            headers=request_id_header("anthropic"))

    async def list_models(request: Request) -> Response:
        """GET /v1/models, in a shape both SDKs accept."""
        await record(request)
        data = [_model_entry(model) for model in models]
        page = {"object": "list", "data": data, "has_more": False, "first_id": models[0] if models else None,
                "last_id": models[-1] if models else None}
        return JSONResponse(page, headers=request_id_header("anthropic"))

    async def get_model(request: Request) -> Response:
        """GET /v1/models/{id}: any id exists."""
        await record(request)
        entry = _model_entry(request.path_params["model_id"])
        return JSONResponse(entry, headers=request_id_header("anthropic"))

    async def not_found(request: Request) -> Response:
        """Any other path: a 404 whose body reads as an error in both dialects."""
        await record(request)
        headers = {**request_id_header("anthropic"), **request_id_header("openai_chat")}
        message = f"Not found: {request.method} {request.url.path}"
        error = {"type": "not_found_error", "message": message, "param": None, "code": None}
        body = {"type": "error", "error": error, "request_id": headers["request-id"]}
        return JSONResponse(body, status_code=404, headers=headers)

    app = Starlette(routes=[
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/{path:path}", not_found, methods=ALL_METHODS),
    ])
    app.state.received = []
    return app
