"""The one place where exceptions become HTTP answers, in the client's own dialect."""

from __future__ import annotations

import logging
import math
import secrets

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from router.errors import ProxyError, UpstreamStatusError, kind_for_status, openai_code
from router.protocol.chat_response import anthropic_error_to_chat, chat_error_to_anthropic
from router.types import Dialect, JSONObject

logger = logging.getLogger("router.api")

_OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses", "/chat/completions", "/responses")


def new_request_id() -> str:
    """A request id in the Anthropic style."""
    return "req_" + secrets.token_hex(12)


def request_dialect(request: Request) -> Dialect:
    """The dialect a request speaks: by path, else by its headers."""
    path = request.url.path
    if path.startswith("/v1/messages"):
        return Dialect.ANTHROPIC
    if path.startswith(_OPENAI_PATHS):
        return Dialect.OPENAI_CHAT
    headers = request.headers
    if "anthropic-version" in headers or "x-api-key" in headers:
        return Dialect.ANTHROPIC
    return Dialect.OPENAI_CHAT


def error_body(dialect: Dialect, kind: str, message: str, request_id: str, param: str | None = None) -> JSONObject:
    """An error body in a dialect."""
    if dialect is Dialect.ANTHROPIC:
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return {"error": {"message": message, "type": kind, "param": param, "code": openai_code(kind)}}


def error_response(request: Request, status: int, kind: str, message: str, param: str | None = None,
                   extra_headers: dict[str, str] | None = None) -> Response:
    """An error answer in the request's dialect."""
    dialect = request_dialect(request)
    request_id = getattr(request.state, "request_id", None) or new_request_id()
    id_header = "request-id" if dialect is Dialect.ANTHROPIC else "x-request-id"
    headers = {id_header: request_id, **(extra_headers or {})}
    body = orjson.dumps(error_body(dialect, kind, message, request_id, param))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _relay_upstream_error(request: Request, exc: UpstreamStatusError) -> Response:
    dialect = request_dialect(request)
    client_kind = "anthropic" if dialect is Dialect.ANTHROPIC else "openai"
    headers = {k: v for k, v in exc.headers.items() if k in ("retry-after", "request-id", "x-request-id")
               or k.startswith(("anthropic-ratelimit", "x-ratelimit"))}
    try:
        upstream = orjson.loads(exc.body) if exc.body else None
    except orjson.JSONDecodeError:
        upstream = None
    if isinstance(upstream, dict) and exc.provider_kind == client_kind:
        return Response(exc.body, status_code=exc.upstream_status, headers=headers, media_type="application/json")
    if isinstance(upstream, dict) and isinstance(upstream.get("error"), dict):
        converted = chat_error_to_anthropic(upstream) if client_kind == "anthropic" else (
            anthropic_error_to_chat(upstream))
        error = converted.get("error") or {}
        kind = str(error.get("type") or kind_for_status(exc.upstream_status))
        message = str(error.get("message") or exc.message)
        return error_response(request, exc.upstream_status, kind, message, extra_headers=headers)
    return error_response(request, exc.upstream_status, kind_for_status(exc.upstream_status),
                          f"upstream answered HTTP {exc.upstream_status}", extra_headers=headers)


async def _proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    if isinstance(exc, UpstreamStatusError):
        logger.info("upstream error %s on %s", exc.upstream_status, request.url.path)
        return _relay_upstream_error(request, exc)
    if exc.status_code >= 500:
        logger.warning("%s on %s: %s", type(exc).__name__, request.url.path, exc.message)
    retry = {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))} if exc.retry_after_s is not None else None
    return error_response(request, exc.status_code, exc.kind, exc.message, exc.param, extra_headers=retry)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = f"{request.method} {request.url.path} not found" if status == 404 else str(exc.detail)
    return error_response(request, status, kind_for_status(status), message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s", request.url.path)
    return error_response(request, 500, "api_error", "internal error in the proxy")


async def render_exception(request: Request, exc: Exception) -> Response:
    """The answer to an exception raised outside FastAPI's handlers (the hot path), mapped as everywhere else."""
    if isinstance(exc, ProxyError):
        return await _proxy_error(request, exc)
    if isinstance(exc, StarletteHTTPException):
        return await _http_error(request, exc)
    return await _unexpected(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Map the exception tree to HTTP for every route."""
    app.add_exception_handler(ProxyError, _proxy_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
