"""Handlers of the admin dashboard: the page and its static files (`router/dashboard_assets/`), and the JSON it
draws (`/dashboard/api/summary`).

Who may see it: whoever may use `/admin` (an admin key; without proxy keys, a client on loopback). A browser
cannot send a key header when it opens a page, so `POST /dashboard/login` takes the key from a form and opens a
session (router/dashboard/sessions.py): the cookie holds only its random token (HttpOnly, SameSite=Strict, sent
only to `/dashboard` paths, Secure behind HTTPS), each use checks the key again, and `POST /dashboard/logout`
ends it. API clients send the key in `Authorization: Bearer` or `x-api-key` as everywhere else.
"""

from __future__ import annotations

import asyncio
import html
from importlib.resources import files
from typing import Annotated
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from router.api.admin import admin, is_admin_key
from router.api.deps import ServicesDep
from router.auth import hash_key, presented_keys
from router.dashboard.reads import cached_summary
from router.errors import AuthenticationError, InvalidRequestError, NotFoundError, PermissionDeniedError
from router.observability.context import note_principal
from router.services import Services
from router.types import Principal

router = APIRouter()
COOKIE = "cascadeflow_dashboard"
MAX_DAYS = 90
MAX_LOGIN_BYTES = 4096
ASSETS = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8",
          "charts.js": "text/javascript; charset=utf-8"}
PAGE_HEADERS = {
    "cache-control": "no-store", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"


async def dashboard_admin(request: Request, services: ServicesDep) -> Principal:
    """The caller when it may see the dashboard (the key in a header, else the sign-in session); 401 or 403."""
    headers: dict[str, str] = dict(request.headers)
    token = request.cookies.get(COOKIE)
    if token and not presented_keys(headers):
        principal = await _session_principal(services, token)
    else:
        principal = await services.authenticator.identify(headers)
    note_principal(principal)
    return await admin(request, services, principal)


async def _session_principal(services: Services, token: str) -> Principal:
    """Who signed in with this session, their key checked again now (a key no longer valid ends it)."""
    sessions = services.dashboard.sessions
    digest = await sessions.resolve(token)
    if digest is None:
        raise AuthenticationError("the dashboard session has ended (signed out or expired): sign in again")
    try:
        return await services.authenticator.identify_digest(digest)
    except AuthenticationError:
        await sessions.close(token)
        raise


DashboardAdmin = Annotated[Principal, Depends(dashboard_admin)]


def _asset(name: str) -> bytes:
    return (files("router") / "dashboard_assets" / name).read_bytes()


SIGN_IN_FORM = """<form method="post" action="/dashboard/login"><label for="key">Admin key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form>"""
LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CascadeFlow Router dashboard: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>body{font:15px system-ui,sans-serif;max-width:28rem;margin:12vh auto;padding:0 1rem;color:#1d2433}
input,button{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}
button{background:#2456d3;color:#fff;border:0;border-radius:4px;cursor:pointer}
p.note{color:#8a2a2a}</style></head>
<body><h1>CascadeFlow Router</h1><p class="note" id="message">MESSAGE</p>
FORM
</body></html>"""


def _login_page(message: str, status: int, *, form: bool) -> Response:
    body = LOGIN_PAGE.replace("FORM", SIGN_IN_FORM if form else "").replace("MESSAGE", html.escape(message))
    return Response(body, status_code=status, media_type="text/html; charset=utf-8",
                    headers={**PAGE_HEADERS, "content-security-policy": LOGIN_CSP})


def _refused(services: Services, exc: AuthenticationError | PermissionDeniedError) -> Response:
    """The sign-in page (with proxy keys) or why there is none (without, off loopback)."""
    return _login_page(exc.message, exc.status_code, form=services.authenticator.mode != "pass_through")


@router.get("/dashboard")
async def page(request: Request, services: ServicesDep) -> Response:
    """The dashboard page for an admin, else the sign-in page (401, 403)."""
    try:
        await dashboard_admin(request, services)
    except (AuthenticationError, PermissionDeniedError) as exc:
        return _refused(services, exc)
    return Response(await asyncio.to_thread(_asset, "index.html"), media_type="text/html; charset=utf-8",
                    headers=PAGE_HEADERS)


@router.post("/dashboard/login")
async def login(request: Request, services: ServicesDep) -> Response:
    """Check an admin key from the sign-in form and keep it in the dashboard's cookie."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BYTES:
            raise InvalidRequestError("the sign-in form is too large")
    key = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0].strip()
    try:
        principal = await services.authenticator.identify({"authorization": f"Bearer {key}"} if key else {})
        note_principal(principal)
        await admin(request, services, principal)
    except (AuthenticationError, PermissionDeniedError) as exc:
        return _refused(services, exc)
    response = RedirectResponse("/dashboard", status_code=303, headers={"cache-control": "no-store"})
    if is_admin_key(principal):  # without proxy keys loopback is what admits, and there is no session to keep
        token = await services.dashboard.sessions.open(hash_key(key))
        response.set_cookie(COOKIE, token, max_age=int(services.dashboard.sessions.ttl_s), path="/dashboard",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/dashboard/logout")
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the dashboard's session and forget its cookie."""
    token = request.cookies.get(COOKIE)
    if token:
        await services.dashboard.sessions.close(token)
    response = RedirectResponse("/dashboard", status_code=303, headers={"cache-control": "no-store"})
    response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


@router.get("/dashboard/assets/{name}")
async def asset(name: str, _: DashboardAdmin) -> Response:
    """The page's script and style sheet."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"no dashboard asset {name!r}")
    return Response(await asyncio.to_thread(_asset, name), media_type=media_type,
                    headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"})


@router.get("/dashboard/api/summary")
async def summary(request: Request, services: ServicesDep, _: DashboardAdmin) -> Response:
    """What the page draws for the last `days` days (1 to 90, default 7): see `router.dashboard.reads`."""
    text = request.query_params.get("days") or "7"
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise InvalidRequestError(f"days: a whole number from 1 to {MAX_DAYS}, got {text!r}", param="days")
    data = await cached_summary(services, int(text))
    return Response(orjson.dumps(data), media_type="application/json", headers={"cache-control": "no-store"})
