"""Handlers of the admin endpoints: read the effective config (secrets masked) and reload the config file.

Who is an admin: with proxy keys, a key with the admin flag (`auth.keys[].admin`, `auth.admin_keys`, or
`cascadeflow keys create --admin`); without proxy keys (pass-through), a client on loopback only. The operators'
endpoints (`/metrics`, the details of `/ready`: router/api/meta.py) need the same admin key with proxy keys, and
are open to anyone without.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from router.api.deps import PrincipalDep, ServicesDep
from router.auth_keys.admission import KeyPrincipal
from router.config_view import masked_config
from router.errors import NotFoundError, PermissionDeniedError
from router.reload import ConfigReloader
from router.types import Principal

router = APIRouter()


def _is_loopback_client(request: Request) -> bool:
    host = request.client.host if request.client is not None else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_admin_key(principal: Principal) -> bool:
    """Whether the caller authenticated with an admin proxy key."""
    return isinstance(principal, KeyPrincipal) and principal.admin


async def admin(request: Request, services: ServicesDep, principal: PrincipalDep) -> Principal:
    """The caller when it may use the admin endpoints, else PermissionDeniedError (403)."""
    if services.authenticator.mode == "pass_through":
        if principal.mode == "pass_through" and _is_loopback_client(request):
            return principal
        raise PermissionDeniedError("without proxy keys the admin endpoints answer only on loopback")
    if is_admin_key(principal):
        return principal
    raise PermissionDeniedError("the admin endpoints need an admin key")


async def operator(request: Request, services: ServicesDep, principal: PrincipalDep) -> Principal:
    """The caller of the operators' endpoints (`/metrics`): with proxy keys an admin, as for the admin endpoints
    (else 403), without them anyone (a scraper off loopback included)."""
    if services.authenticator.mode == "pass_through":
        return principal
    return await admin(request, services, principal)


AdminDep = Annotated[Principal, Depends(admin)]
OperatorDep = Annotated[Principal, Depends(operator)]


def _reloader(request: Request) -> ConfigReloader | None:
    reloader: ConfigReloader | None = getattr(request.app.state, "reloader", None)
    return reloader


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


@router.get("/admin/config")
async def read_config(request: Request, services: ServicesDep, _: AdminDep) -> Response:
    """The effective config (what the proxy runs with, reloads included) with every secret masked."""
    reloader = _reloader(request)
    status = reloader.status() if reloader is not None else {"enabled": False}
    return _json({"config": masked_config(services.settings), "reload": status})


@router.post("/admin/config/reload")
async def reload_config(request: Request, _: AdminDep) -> Response:
    """Reload the config file now; 422 with the reason when it is rejected (the running config is kept)."""
    reloader = _reloader(request)
    if reloader is None:
        raise NotFoundError("the proxy was started without a config file: there is nothing to reload")
    result = await reloader.reload("admin request")
    return _json(result.as_dict(), 422 if result.status == "rejected" else 200)
