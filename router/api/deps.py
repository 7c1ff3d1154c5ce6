"""Dependencies of the handlers: the services, the parsed body, the authenticated call."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from router.api.errors import new_request_id
from router.errors import InvalidRequestError, PayloadTooLargeError
from router.observability.context import note_principal
from router.services import Services
from router.types import ClientCall, Dialect, Endpoint, JSONObject, Principal


async def get_services(request: Request) -> Services:
    """The process's services, built in the lifespan."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(request: Request, services: ServicesDep) -> Principal:
    """The caller, or AuthenticationError (401)."""
    request.state.request_id = getattr(request.state, "request_id", None) or new_request_id()  # set by the app
    principal = await services.authenticator.identify(request.headers)
    note_principal(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def read_json_body(request: Request, limit: int) -> tuple[bytes, JSONObject]:
    """The raw body and its decoded object; 413 past the limit, 400 when not a JSON object."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        decoded: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return raw, decoded


async def client_call(request: Request, services: Services, principal: Principal, dialect: Dialect,
                      endpoint: Endpoint) -> ClientCall:
    """Read the body and assemble the call (validation is the pipeline's first step)."""
    raw, body = await read_json_body(request, services.settings.server.max_body_bytes)
    call = ClientCall(
        dialect=dialect,
        endpoint=endpoint,
        body=body,
        raw_body=raw,
        headers={key.lower(): value for key, value in request.headers.items()},
        query=request.url.query,
        principal=principal,
        request_id=request.state.request_id,
    )
    return call
