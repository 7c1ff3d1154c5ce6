"""The composition root: create_app(settings) builds every object in the lifespan; importing does nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from starlette.types import Receive, Scope, Send

from router import __version__
from router.api import llm, meta
from router.api.errors import install_error_handlers, render_exception
from router.api.llm import HOT_PATHS
from router.services import Services
from router.settings import Settings, load_settings

if TYPE_CHECKING:
    from router.embedding.encoder import Encoder


class HotPathApp:
    """The ASGI entry: POSTs to the LLM paths go straight to their handlers, everything else to FastAPI.

    FastAPI's middleware stack cost about 40% of the proxy's CPU under load (py-spy on
    benchmarks/proxy_overhead.py); the handlers and the error mapping are the same either way.
    """

    def __init__(self, app: FastAPI) -> None:
        self.fastapi = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = HOT_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None or scope.get("method") != "POST":
            await self.fastapi(scope, receive, send)
            return
        scope["app"] = self.fastapi
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:  # mapped to HTTP in one place, as for FastAPI's routes
            response = await render_exception(request, exc)
        await response(scope, receive, send)


def create_app(settings: Settings, encoder: Encoder | None = None) -> HotPathApp:
    """A proxy application for these settings (an already loaded encoder may be shared, e.g. by tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings, encoder)
        await services.start()
        app.state.services = services
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(title="CascadeFlow Router", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(llm.router)
    app.include_router(meta.router)
    return HotPathApp(app)


def create_app_from_environment() -> HotPathApp:
    """Factory for `uvicorn --factory` and multi-worker start: settings from CASCADEFLOW_CONFIG."""
    from router.settings import config_path_from_environment

    return create_app(load_settings(config_path_from_environment()))
