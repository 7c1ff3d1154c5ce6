"""Shared fixtures: a scripted upstream that speaks the providers' wire formats, and proxies in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from router.app import create_app
from router.embedding.encoder import Encoder
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource
from router.replay.server import create_upstream_app
from router.settings import Settings
from tests.support import ProxyFactory, proxy_settings


@pytest.fixture(scope="session")
def upstream() -> Iterator[BackgroundServer]:
    """The scripted upstream (Anthropic at /v1/messages, OpenAI at /v1/chat/completions and /v1/responses)."""
    server = BackgroundServer(create_upstream_app(ScriptedSource()))
    with server:
        yield server


@pytest.fixture(scope="session")
def proxy_factory(upstream: BackgroundServer) -> Iterator[ProxyFactory]:
    """Start extra proxies with their own settings; all are stopped at the end of the session."""
    started: list[BackgroundServer] = []

    def start(settings: Settings | None = None, encoder: Encoder | None = None, **sections: Any) -> BackgroundServer:
        server = BackgroundServer(create_app(settings or proxy_settings(upstream.url, **sections), encoder))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def proxy(proxy_factory: ProxyFactory) -> BackgroundServer:
    """The default proxy: pass-through auth, every provider on the scripted upstream."""
    return proxy_factory()


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The real all-MiniLM-L6-v2 encoder, loaded once for the whole session."""
    loaded = Encoder()
    loaded.load()
    return loaded
