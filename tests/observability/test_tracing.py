"""OpenTelemetry: a server span per request with a child per pipeline stage; nothing at all when tracing is off."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from router.app import create_app
from router.embedding.encoder import Encoder
from router.errors import ConfigError
from router.observability.context import RequestRecord, begin, end, stage
from router.observability.settings import TracingSettings
from router.observability.tracing import Tracing
from router.replay.runner import BackgroundServer
from tests.support import marker, proxy_settings

ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
RULES = [{"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
          "quality_threshold": 0.6}]
TRACING = {"enabled": True, "service_name": "cascadeflow-test"}


@pytest.fixture(scope="module")
def traced(upstream: BackgroundServer) -> Iterator[tuple[BackgroundServer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    app = create_app(proxy_settings(upstream.url, cascade_rules=RULES, tracing=TRACING), span_exporter=exporter)
    with BackgroundServer(app) as server:
        yield server, exporter


def ask(proxy: BackgroundServer, text: str, model: str = "claude-opus-4-8", **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "max_tokens": 64, "temperature": 0,
                            "messages": [{"role": "user", "content": text}]}
    return httpx.post(proxy.url + "/v1/messages", json=body, headers={**ANTHROPIC, **headers}, timeout=30)


def trace_of(exporter: InMemorySpanExporter, request_id: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The request's server span and every other span of its trace (ended at the request's end: no waiting)."""
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if (s.attributes or {}).get("cascadeflow.request_id") == request_id)
    assert root.context is not None
    children = [s for s in spans if s.context is not None and s.context.trace_id == root.context.trace_id
                and s is not root]
    return root, children


def test_a_cascade_request_is_a_server_span_with_a_child_per_stage(
        traced: tuple[BackgroundServer, InMemorySpanExporter]) -> None:
    proxy, exporter = traced
    response = ask(proxy, f"{marker()} [[weak:claude-haiku-4-5]]")
    assert response.status_code == 200
    root, children = trace_of(exporter, response.headers["x-request-id"])
    assert root.name == "POST /v1/messages" and root.kind is SpanKind.SERVER and root.parent is None
    attributes = root.attributes or {}
    assert attributes["http.response.status_code"] == 200 and attributes["cascadeflow.route"] == "escalated"
    assert attributes["cascadeflow.draft_model"] == "claude-haiku-4-5" and attributes["cascadeflow.cost_usd"] > 0
    assert root.resource.attributes["service.name"] == "cascadeflow-test"
    assert sorted(s.name for s in children) == ["classify", "draft", "score", "strong"]
    assert root.context is not None
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in children)
    draft = next(s for s in children if s.name == "draft")
    assert (draft.attributes or {})["model"] == "claude-haiku-4-5"
    assert draft.start_time is not None and root.start_time is not None and draft.start_time >= root.start_time


def test_a_failed_request_is_an_error_span(traced: tuple[BackgroundServer, InMemorySpanExporter]) -> None:
    proxy, exporter = traced
    response = ask(proxy, f"{marker()} [[status:500]]", model="claude-sonnet-5")
    assert response.status_code == 500
    root, children = trace_of(exporter, response.headers["x-request-id"])
    assert root.status.status_code is StatusCode.ERROR and (root.attributes or {})["cascadeflow.route"] == "failed"
    assert [s.name for s in children] == ["upstream"]


def test_a_request_with_traceparent_joins_the_callers_trace(
        traced: tuple[BackgroundServer, InMemorySpanExporter]) -> None:
    proxy, exporter = traced
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = ask(proxy, marker(), model="claude-sonnet-5", traceparent=f"00-{trace_id}-{parent_id}-01")
    root, _ = trace_of(exporter, response.headers["x-request-id"])
    assert root.context is not None and root.parent is not None
    assert f"{root.context.trace_id:032x}" == trace_id and f"{root.parent.span_id:016x}" == parent_id


def test_span_names_stay_few(traced: tuple[BackgroundServer, InMemorySpanExporter]) -> None:
    proxy, exporter = traced
    response = httpx.get(proxy.url + f"/nothing/{marker()}")
    root, _ = trace_of(exporter, response.headers["x-request-id"])
    assert root.name == "GET", "an unknown path must not become a span name"


def test_tracing_off_builds_nothing(proxy: BackgroundServer) -> None:
    assert Tracing.build(TracingSettings()) is None
    assert proxy.app.state.tracing is None  # type: ignore[attr-defined]
    response = httpx.get(proxy.url + "/health")
    assert response.status_code == 200 and "traceparent" not in response.headers


@pytest.mark.slow
def test_tracing_off_imports_no_sdk() -> None:
    code = ("import sys\n"
            "from router.app import create_app\n"
            "from router.settings import Settings\n"
            "create_app(Settings(embedding={'enabled': False}, outcome_log={'enabled': False}))\n"
            "assert not [m for m in sys.modules if m.startswith('opentelemetry.sdk')], 'the SDK was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_stage_outside_a_request_or_without_tracing_only_times() -> None:
    with stage("draft"):
        pass  # no request: nothing happens
    record = RequestRecord("req_1", "POST", "/v1/messages")
    token = begin(record)
    try:
        with stage("draft", model="m"), stage("embed"):
            pass
        with stage("embed"):
            pass
    finally:
        end(token)
    assert set(record.stages_ms) == {"draft", "embed"} and record.stages_ms["draft"] >= 0.0


def test_tracing_on_without_the_sdk_fails_naming_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError, match=r"tracing.enabled: .*opentelemetry-sdk"):
        Tracing.build(TracingSettings(enabled=True))


@pytest.mark.slow
def test_a_cached_request_traces_embed_and_cache(upstream: BackgroundServer, encoder: Encoder) -> None:
    exporter = InMemorySpanExporter()
    settings = proxy_settings(upstream.url, cascade_rules=RULES, tracing=TRACING, embedding={"enabled": True},
                              cache={"enabled": True, "directory": None})
    with BackgroundServer(create_app(settings, encoder, span_exporter=exporter)) as proxy:
        text = f"What is the capital of France? {marker()}"
        first = ask(proxy, text)
        deadline = time.monotonic() + 10  # the answer is remembered in the background
        while (second := ask(proxy, text)).headers.get("x-cascadeflow-cache") != "hit" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.headers.get("x-cascadeflow-cache") == "hit"
        _, children = trace_of(exporter, first.headers["x-request-id"])
        names = sorted(s.name for s in children)
        assert names[:2] == ["cache", "classify"] and {"embed", "draft", "score"} <= set(names)
        embed = next(s for s in children if s.name == "embed")
        cache = next(s for s in children if s.name == "cache")
        assert cache.context is not None and embed.parent is not None and embed.parent.span_id == cache.context.span_id
        _, children = trace_of(exporter, second.headers["x-request-id"])
        assert sorted(s.name for s in children) in (["cache"], ["cache", "embed"])
