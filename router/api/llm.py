"""Thin handlers of the LLM endpoints: authenticate, parse, call the pipeline, render."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from router.api.deps import authenticate, client_call, get_services
from router.api.disconnect import unless_disconnected
from router.api.keepalive import answer_or_keepalive
from router.errors import ProxyError
from router.services import Services
from router.types import Answer, ClientCall, Dialect, Endpoint, JSONAnswer

router = APIRouter()


def render(answer: Answer) -> Response:
    """JSON or an event stream, by the answer's type."""
    if isinstance(answer, JSONAnswer):
        return Response(answer.body, status_code=answer.status, headers=answer.headers)
    return StreamingResponse(answer.frames, status_code=answer.status, headers=answer.headers)


async def _serve(request: Request, dialect: Dialect, endpoint: Endpoint) -> Response:
    # The hot path resolves its dependencies directly: FastAPI's dependency solver cost a third of the
    # proxy's CPU under load (benchmarks/proxy_overhead.py); the same functions back `Depends` elsewhere.
    services = await get_services(request)
    try:
        principal = await authenticate(request, services)
        call = await client_call(request, services, principal, dialect, endpoint)
    except ProxyError as error:  # refused before it became a call (key, body size, JSON): counted, nothing to record
        _rejected(services, dialect, endpoint, error.status_code)
        raise
    handled: list[ClientCall] = []

    async def handle(admitted: ClientCall) -> Answer:
        handled.append(admitted)
        return await services.pipeline.handle(admitted)

    async def answered() -> Answer:
        try:
            answer = await unless_disconnected(request, services.authenticator.admitted(call, handle))
        except ProxyError as error:
            if not handled:  # admission failed (a limiter's store is down): counted, nothing to record
                _rejected(services, dialect, endpoint, error.status_code)
            raise
        if not handled:  # refused by a rate limit or a budget: counted, nothing to record
            _rejected(services, dialect, endpoint, answer.status)
        return answer

    keepalive_s = services.settings.server.stream_keepalive_s
    if call.stream and keepalive_s > 0 and services.pipeline.may_draft(call):  # a draft may delay the answer
        return await answer_or_keepalive(answered(), dialect, keepalive_s, render)
    return render(await answered())


def _rejected(services: Services, dialect: Dialect, endpoint: Endpoint, status: int) -> None:
    services.metrics.inc("cascadeflow_requests_total", endpoint=endpoint.value, route="rejected",
                         dialect=dialect.value, status=str(status))


@router.post("/v1/messages")
async def messages(request: Request) -> Response:
    """Anthropic Messages."""
    return await _serve(request, Dialect.ANTHROPIC, Endpoint.MESSAGES)


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    """Anthropic token counting."""
    return await _serve(request, Dialect.ANTHROPIC, Endpoint.COUNT_TOKENS)


@router.post("/v1/chat/completions")
@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(request: Request) -> Response:
    """OpenAI Chat Completions."""
    return await _serve(request, Dialect.OPENAI_CHAT, Endpoint.CHAT)


@router.post("/v1/responses")
@router.post("/responses", include_in_schema=False)
async def responses(request: Request) -> Response:
    """OpenAI Responses."""
    return await _serve(request, Dialect.OPENAI_RESPONSES, Endpoint.RESPONSES)


HOT_PATHS: dict[str, Callable[[Request], Awaitable[Response]]] = {
    "/v1/messages": messages,
    "/v1/messages/count_tokens": count_tokens,
    "/v1/chat/completions": chat_completions,
    "/chat/completions": chat_completions,
    "/v1/responses": responses,
    "/responses": responses,
}
"""POST paths served by the hot path in router/app.py (the same handlers FastAPI routes to)."""
