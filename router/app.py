"""The composition root: create_app(settings) builds every object in the lifespan; importing does nothing."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from types import MappingProxyType
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from router import __version__
from router.api import admin, dashboard, llm, meta, usage
from router.api.errors import install_error_handlers, render_exception, request_dialect
from router.api.llm import HOT_PATHS
from router.errors import ShuttingDownError, UpstreamError
from router.metrics import Metrics
from router.observability.middleware import observe
from router.observability.tracing import Tracing
from router.protocol.streams import closing_error
from router.reload import ConfigReloader, ConfigSource
from router.services import Services
from router.settings import Settings, load_settings
from router.shutdown import Deadline, ShutdownPlan
from router.types import Dialect

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from router.embedding.encoder import Encoder

logger = logging.getLogger("router.app")


class HotPathApp:
    """The ASGI entry: POSTs to the LLM paths go straight to their handlers, everything else to FastAPI.

    FastAPI's middleware stack cost about 40% of the proxy's CPU under load (py-spy on
    benchmarks/proxy_overhead.py); the handlers and the error mapping are the same either way.
    """

    def __init__(self, app: FastAPI) -> None:
        self.fastapi = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # a request id, a log line and a span for every request
            await observe(self._dispatch, self.state, scope, receive, send)
        else:
            await self.fastapi(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services | None = getattr(self.state, "services", None)
        hold = services.bodies.hold() if services is not None else None
        scope.setdefault("state", {})["body_hold"] = hold  # the request's body is held from its reading to here
        answer = _Answer(send)
        try:
            await self._route(scope, receive, answer)
        except asyncio.CancelledError:
            if not await _cut_at_shutdown(scope, receive, answer):
                raise
        finally:
            if hold is not None:  # the request has ended: answered, failed, cancelled or its client gone
                hold.release()

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = HOT_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None or scope.get("method") != "POST":
            await self.fastapi(scope, receive, send)
            return
        started = time.perf_counter()
        scope["app"] = self.fastapi
        request = Request(scope, receive)
        metrics: Metrics | None = getattr(getattr(self.state, "services", None), "metrics", None)
        try:
            response = await handler(request)
        except Exception as exc:  # mapped to HTTP in one place, as for FastAPI's routes
            if isinstance(exc, UpstreamError) and metrics is not None:
                metrics.inc("cascadeflow_upstream_errors_total", kind=exc.kind, status=str(exc.status_code))
            response = await render_exception(request, exc)
        if isinstance(response, StreamingResponse) and metrics is not None:
            send = _first_byte_timer(send, metrics, started, _stream_labels(scope["path"], response))
        await response(scope, receive, send)


_PATH_LABELS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "/v1/messages": ("messages", "anthropic"), "/v1/messages/count_tokens": ("count_tokens", "anthropic"),
    "/v1/chat/completions": ("chat", "openai_chat"), "/chat/completions": ("chat", "openai_chat"),
    "/v1/responses": ("responses", "openai_responses"), "/responses": ("responses", "openai_responses"),
})
"""The endpoint and dialect of each hot path, as the pipeline's metrics name them."""
_ROUTES = frozenset({"draft", "escalated", "strong"})


def _stream_labels(path: str, response: StreamingResponse) -> dict[str, str]:
    """A stream's metric labels; its route from the answer's own headers (a cache hit, a cascade rule's route,
    else pass-through; a route header relayed from an upstream cannot add label values)."""
    endpoint, dialect = _PATH_LABELS.get(path, ("other", "other"))
    route = response.headers.get("x-cascadeflow-route", "")
    if response.headers.get("x-cascadeflow-cache") == "hit":
        route = "cache"
    elif route not in _ROUTES:
        route = "pass_through"
    return {"endpoint": endpoint, "dialect": dialect, "route": route}


def _first_byte_timer(send: Send, metrics: Metrics, started: float, labels: dict[str, str]) -> Send:
    """`send`, observing the time to the first byte of the answer's body."""
    waiting = True

    async def timed(message: Message) -> None:
        nonlocal waiting
        if waiting and message["type"] == "http.response.body" and message.get("body"):
            waiting = False
            metrics.observe("cascadeflow_stream_first_byte_seconds", time.perf_counter() - started, **labels)
        await send(message)

    return timed


class _Answer:
    """A request's `send`, noting how far its answer has gone: started, an event stream, ended."""

    __slots__ = ("send", "started", "stream", "ended")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = self.stream = self.ended = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.stream = any(name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                              for name, value in message.get("headers") or ())
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.ended = True
        await self.send(message)


async def _cut_at_shutdown(scope: Scope, receive: Receive, answer: _Answer) -> bool:
    """End an answer uvicorn cancelled at the end of the answers' share of the grace (router/shutdown.py) in its
    dialect, instead of uvicorn's plain-text 500 or a cut connection: a 503 with `retry-after` if nothing was sent
    yet, or a stream's error event (the one a failing upstream gets, then `[DONE]` in a chat stream) and its end;
    whether it was (a JSON body already begun cannot be: its connection is closed). uvicorn cancels a request's task
    only then; the task ends here either way."""
    task = asyncio.current_task()
    if task is None or not task.cancelling():
        return False
    error = ShuttingDownError()
    if not answer.started:
        response = await render_exception(Request(scope, receive), error)
        await response(scope, receive, answer)
    elif answer.stream and not answer.ended:
        dialect = Dialect(_PATH_LABELS.get(scope.get("path", ""), ("", request_dialect(Request(scope))))[1])
        await answer({"type": "http.response.body", "more_body": False,
                      "body": closing_error(dialect, error.kind, error.message)})
        logger.warning("a stream on %s was cut at shutdown: it ends with an error event", scope.get("path"))
    elif not answer.ended:
        return False
    task.uncancel()
    return True


GAUGE_INTERVAL_S = 5.0


async def _sample_gauges(services: Services) -> None:
    """With several workers, each keeps its own state gauges fresh (a scrape reaches only one of them)."""
    while True:
        try:
            meta.sample_gauges(services)
        except Exception:  # a status that cannot be read must not end the sampling
            logger.exception("sampling the state gauges failed")
        await asyncio.sleep(GAUGE_INTERVAL_S)


YOUNG_COLLECTION_AFTER = 20_000
"""Allocations between two collections of the youngest generation (Python's default is 700): each collection
scans the objects of the requests in flight, so fewer of them cost less; 6% of the CPU of a pass-through request
at 64 concurrent requests."""


def settle_heap() -> None:
    """Take what start-up built (modules, settings, models) out of the cycle collector's sight: collected once,
    then frozen, so the collections that per-request garbage triggers scan only young objects, and less often
    (`YOUNG_COLLECTION_AFTER`). Without it the collector took a quarter of the proxy's CPU under load
    (pass-through, 64 concurrent requests)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, older, oldest)


def create_app(settings: Settings, encoder: Encoder | None = None, *, config: ConfigSource | None = None,
               span_exporter: SpanExporter | None = None, server_process: bool = False) -> HotPathApp:
    """A proxy application for these settings (an already loaded encoder may be shared, e.g. by tests); with
    `config`, the file they came from is reloaded live; `span_exporter` replaces the OTLP exporter (tests);
    `server_process` (the process serves this app alone) settles the heap once started (`settle_heap`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.tracing = Tracing.build(settings.tracing, span_exporter)
        services = Services.build(settings, encoder)
        await services.start()
        app.state.services = services
        sampler = asyncio.create_task(_sample_gauges(services)) if services.metrics.shared else None
        reloader = ConfigReloader(config, services, settings.reload, services.metrics) if config else None
        app.state.reloader = reloader
        if reloader is not None:
            reloader.start()
        if server_process:
            settle_heap()
        try:
            yield
        finally:  # within the stop's share of server.shutdown_grace_s (router/shutdown.py)
            deadline = Deadline(ShutdownPlan.of(settings.server.shutdown_grace_s).stop_s)
            if reloader is not None:
                await deadline.run(reloader.stop(), "the config reloader")
            if sampler is not None:
                sampler.cancel()
                with suppress(asyncio.CancelledError):
                    await sampler
            await services.stop(deadline)
            services.metrics.close()
            if app.state.tracing is not None:  # the exporter's thread is left behind when cut short
                await deadline.run(asyncio.to_thread(app.state.tracing.shutdown), "the trace exporter",
                                   cut="spans not yet exported are lost")

    app = FastAPI(title="CascadeFlow Router", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(llm.router)
    app.include_router(meta.router)
    app.include_router(usage.router)
    app.include_router(admin.router)
    app.include_router(dashboard.router)
    return HotPathApp(app)


def create_app_from_environment() -> HotPathApp:
    """Factory for `uvicorn --factory` and multi-worker start: settings from CASCADEFLOW_CONFIG (each worker
    logs as the settings say, and reloads the file itself)."""
    from router.observability.logs import configure_logging
    from router.settings import config_path_from_environment

    path = config_path_from_environment()
    settings = load_settings(path)
    configure_logging(settings.logging, settings.server.log_level)
    return create_app(settings, config=ConfigSource(path) if path is not None else None, server_process=True)
