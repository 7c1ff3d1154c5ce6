"""Dependencies of the handlers: the services, the parsed body, the authenticated call."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from router.api.disconnect import CLIENT_GONE
from router.api.errors import new_request_id
from router.bodies import BodyBudget, BodyHold
from router.errors import ClientDisconnectedError, InvalidRequestError
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


async def read_json_body(request: Request, hold: BodyHold) -> tuple[bytes, JSONObject]:
    """The raw body and its decoded object, held in `hold` (router/bodies.py: 413 past a limit, 429 past the bytes
    in flight) as it is read; 400 when not a JSON object, 499 when the client leaves before its end."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        hold.reserve(int(declared), declared=True)  # refused before a byte is read
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            hold.reserve(size)  # within a declared length: nothing more
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnectedError(CLIENT_GONE) from None
    raw = b"".join(chunks)
    try:
        decoded: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return raw, decoded


def body_hold(request: Request, services: Services) -> BodyHold:
    """The request's hold on the bodies in flight, taken and released by the dispatch of router/app.py; a request
    that did not come through it gets a hold of its own, under the same limits but counted nowhere else."""
    hold: BodyHold | None = getattr(request.state, "body_hold", None)
    if hold is None:
        bodies = services.bodies
        hold = BodyBudget(bodies.max_body_bytes, bodies.max_inflight_bytes).hold()
    return hold


async def client_call(request: Request, services: Services, principal: Principal, dialect: Dialect,
                      endpoint: Endpoint) -> ClientCall:
    """Read the body and assemble the call (validation is the pipeline's first step)."""
    raw, body = await read_json_body(request, body_hold(request, services))
    call = ClientCall(
        dialect=dialect,
        endpoint=endpoint,
        body=body,
        raw_body=raw,
        headers={key.lower(): value for key, value in request.headers.items()},
        query=request.scope.get("query_string", b"").decode("latin-1"),  # as request.url.query, unparsed
        principal=principal,
        request_id=request.state.request_id,
    )
    return call
