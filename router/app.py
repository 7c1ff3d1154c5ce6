"""The composition root: create_app(settings) builds every object in the lifespan; importing does nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from router import __version__
from router.api import llm, meta
from router.api.errors import install_error_handlers
from router.services import Services
from router.settings import Settings, load_settings

if TYPE_CHECKING:
    from router.embedding.encoder import Encoder


def create_app(settings: Settings, encoder: Encoder | None = None) -> FastAPI:
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
    return app


def create_app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker start: settings from CASCADEFLOW_CONFIG."""
    from router.settings import config_path_from_environment

    return create_app(load_settings(config_path_from_environment()))
