"""Every HTTP request gets an id (the client's `x-request-id` when valid, else a new one), returned in the
`x-request-id` header of its answer (errors and streams included), one log line when it ends and, with
tracing on, a server span.

An upstream's own `x-request-id` (OpenAI sends one) is kept as `x-upstream-request-id` and logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.api.errors import new_request_id
from router.observability.context import RequestRecord, begin, end
from router.observability.logs import log_request, request_fields
from router.observability.settings import LoggingSettings
from router.observability.tracing import Tracing, finish_request_span

logger = logging.getLogger("router.observability")

REQUEST_ID_HEADER = b"x-request-id"
UPSTREAM_ID_HEADER = b"x-upstream-request-id"
MAX_REQUEST_ID = 128
_VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]*")
_DEFAULT_LOGGING = LoggingSettings()


def accepted_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client's request id when it is safe to echo and log (letters, digits and `._:/+=@-`, at most 128
    characters, starting with a letter or digit); None otherwise."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            text = value.decode("latin-1").strip()
            return text if len(text) <= MAX_REQUEST_ID and _VALID_ID.fullmatch(text) else None
    return None


async def observe(app: ASGIApp, state: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one HTTP request through `app` with its id, its log line and its span; `state` is the app's
    state (its `services` and `tracing`, once the lifespan has built them)."""
    headers = scope.get("headers") or []
    request_id = accepted_request_id(headers) or new_request_id()
    scope.setdefault("state", {})["request_id"] = request_id  # `request.state.request_id` for the handlers
    tracing: Tracing | None = getattr(state, "tracing", None)
    record = RequestRecord(request_id, str(scope.get("method", "")), str(scope.get("path", "")), tracer=tracing)
    token = begin(record)
    try:
        if tracing is None:
            await _serve(app, record, scope, receive, send)
        else:
            carrier = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers}
            with tracing.request(record, carrier) as span:
                try:
                    await _serve(app, record, scope, receive, send)
                finally:
                    finish_request_span(span, request_fields(record))
    finally:
        end(token)
        services = getattr(state, "services", None)
        settings = services.settings.logging if services is not None else _DEFAULT_LOGGING
        try:
            log_request(record, settings)
        except Exception:  # the log line must never fail a request
            logger.exception("logging request %s failed", request_id)


async def _serve(app: ASGIApp, record: RequestRecord, scope: Scope, receive: Receive, send: Send) -> None:
    """`app`, its answer's status, first byte and end noted, and the request id set on its headers."""

    async def observed(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            record.status = int(message["status"])
            message = {**message, "headers": _with_request_id(message.get("headers") or [], record)}
        elif kind == "http.response.body":
            if record.first_byte_ms is None and message.get("body"):
                record.first_byte_ms = record.elapsed_ms()
            if not message.get("more_body", False):
                record.complete = True
        await send(message)

    await app(scope, receive, observed)


def _with_request_id(headers: Iterable[tuple[bytes, bytes]], record: RequestRecord) -> list[tuple[bytes, bytes]]:
    """The answer's headers with ours as `x-request-id` (an upstream's own one moved aside)."""
    ours = record.request_id.encode("latin-1")
    result: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            if value != ours:
                record.upstream_request_id = value.decode("latin-1")[:MAX_REQUEST_ID]
                result.append((UPSTREAM_ID_HEADER, value))
            continue
        result.append((name, value))
    result.append((REQUEST_ID_HEADER, ours))
    return result
