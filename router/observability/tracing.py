"""OpenTelemetry traces: a server span per HTTP request and a child span per pipeline stage, over OTLP/HTTP.

Off by default, and then the OpenTelemetry SDK is not imported: a stage costs one `perf_counter` pair for the
request's log line. On, the app's lifespan builds its own `TracerProvider` (never the process-global one, so
several apps may run in one process) and shuts it down, flushing what is batched, at the end. A request that
arrives with a W3C `traceparent` joins its caller's trace.

Stages: `cache` (the semantic cache lookup, `embed` inside it), `classify` (the learned router, with its own
`embed` when the cache did not embed), `draft`, `score` (the verifier), `strong` (the strong model of a
cascade rule: until its answer's headers for a stream) and `upstream` (a pass-through model).

Every call to a provider (router/providers/transport.py, `outgoing_headers`) carries the W3C `traceparent` (and
`tracestate` when there is one) of the span it runs in, so a provider or an internal gateway can join the trace;
a client's own `traceparent` is not forwarded raw then (the proxy's span, its child, takes its place). Off, an
upstream call's headers are left as they are (a client's `traceparent` passes through with its other headers,
to a provider of its own dialect) and the check costs one context-variable read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from router import __version__
from router.errors import ConfigError
from router.observability.context import Attribute, RequestRecord, current
from router.observability.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

SPAN_PATHS = frozenset({
    "/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/chat/completions", "/v1/responses",
    "/responses", "/v1/models", "/models", "/health", "/ready", "/metrics", "/", "/admin/config",
    "/admin/config/reload"})
"""Paths that name their span; any other is named by its method alone (span names must stay few)."""
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})

MISSING_SDK = ("tracing.enabled: the OpenTelemetry SDK or its OTLP exporter cannot be imported ({error}); "
               "reinstall cascadeflow-router with its dependencies (opentelemetry-sdk, "
               "opentelemetry-exporter-otlp-proto-http), or set tracing.enabled: false")


def check_available(settings: TracingSettings) -> None:
    """Raise ConfigError, naming what is missing, when tracing is on but OpenTelemetry cannot be imported."""
    if not settings.enabled:
        return
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise ConfigError(MISSING_SDK.format(error=exc)) from exc


class Tracing:
    """The tracer of one app: request spans, stage spans, and the provider to shut down."""

    def __init__(self, provider: TracerProvider, tracer: Tracer) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer = tracer
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def build(cls, settings: TracingSettings, exporter: SpanExporter | None = None) -> Tracing | None:
        """The tracer for these settings (None when tracing is off); `exporter` replaces OTLP (tests). Raises
        ConfigError, naming the missing package, when tracing is on but OpenTelemetry is not installed."""
        if not settings.enabled:
            return None
        check_available(settings)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})
        provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        processor: SpanProcessor
        if exporter is None:
            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint,
                                                            headers=dict(settings.headers),
                                                            timeout=settings.timeout_s))
        else:
            processor = SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        return cls(provider, provider.get_tracer("cascadeflow-router", __version__))

    @contextmanager
    def request(self, record: RequestRecord, headers: Mapping[str, str]) -> Iterator[Span]:
        """The server span of one HTTP request, current while it is served (a child of the caller's span when
        the request carries `traceparent`)."""
        from opentelemetry.trace import SpanKind

        parent = self._propagator.extract(carrier=headers)
        name = f"{record.method} {record.path}" if record.path in SPAN_PATHS else record.method
        attributes: dict[str, Attribute] = {"http.request.method": record.method, "url.path": record.path,
                                            "cascadeflow.request_id": record.request_id}
        with self._tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER,
                                                attributes=attributes) as span:
            yield span

    def stage(self, name: str, attributes: dict[str, Attribute]) -> AbstractContextManager[object]:
        """A child span of the current span for one pipeline stage."""
        return self._tracer.start_as_current_span(name, attributes=attributes)

    def inject(self, headers: dict[str, str]) -> None:
        """Put the current span's W3C trace context in an outgoing call's headers, in place of any given."""
        for name in [name for name in headers if name.lower() in TRACE_HEADERS]:
            del headers[name]
        self._propagator.inject(headers)

    def shutdown(self) -> None:
        """Export what is batched and stop the exporter (blocking: call it in a thread)."""
        self._provider.shutdown()


def outgoing_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a call to a provider: with tracing on, the current span's `traceparent` and `tracestate`
    instead of any the client sent; with it off, as given."""
    sent = dict(headers)
    record = current()
    if record is not None and isinstance(record.tracer, Tracing):
        record.tracer.inject(sent)
    return sent


def finish_request_span(span: Span, fields: Mapping[str, object]) -> None:
    """Put a finished request's outcome on its span (its request log line's fields, text never included)."""
    from opentelemetry.trace import Status, StatusCode

    status = fields.get("status")
    if isinstance(status, int):
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    for key in ("tenant", "key_id", "endpoint", "dialect", "stream", "requested_model", "route", "rule",
                "draft_model", "strong_model", "served_model", "draft_status", "cache_hit", "cost_usd",
                "strong_only_usd", "saved_usd", "wasted_draft_usd", "confidence", "input_tokens", "output_tokens"):
        value = fields.get(key)
        if isinstance(value, str | bool | int | float):
            span.set_attribute(f"cascadeflow.{key}", value)
