"""Trace context to providers: with tracing on, every upstream call carries the `traceparent` of the span it runs
in (a client's own is replaced by the proxy's child of it, its `tracestate` kept); with tracing off, headers pass
as before (a client's `traceparent` with its other headers to a provider of its dialect, nothing added)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from router.app import create_app
from router.observability.context import RequestRecord, begin, end
from router.observability.tracing import outgoing_headers
from router.replay.runner import BackgroundServer
from tests.observability.test_tracing import ANTHROPIC, RULES, TRACING, ask, trace_of
from tests.support import marker, proxy_settings, received_with

CLIENT_TRACE, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


@pytest.fixture(scope="module")
def traced(upstream: BackgroundServer) -> Iterator[tuple[BackgroundServer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    app = create_app(proxy_settings(upstream.url, cascade_rules=RULES, tracing=TRACING), span_exporter=exporter)
    with BackgroundServer(app) as server:
        yield server, exporter


def upstream_headers(upstream: BackgroundServer, tag: str) -> list[dict[str, str]]:
    """The headers of each call the upstream received for a request, in order."""
    return [item["headers"] for item in received_with(upstream, tag)]


def parent_of(headers: dict[str, str]) -> tuple[str, str]:
    """The trace id and parent span id a call's `traceparent` names."""
    found = TRACEPARENT.fullmatch(headers["traceparent"])
    assert found is not None, headers["traceparent"]
    return found.group(1), found.group(2)


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def test_each_upstream_call_carries_the_span_it_runs_in(
        traced: tuple[BackgroundServer, InMemorySpanExporter], upstream: BackgroundServer) -> None:
    proxy, exporter = traced
    tag = marker()
    response = ask(proxy, f"{tag} [[weak:claude-haiku-4-5]]")  # a draft, then the strong model
    assert response.status_code == 200
    root, children = trace_of(exporter, response.headers["x-request-id"])
    assert root.context is not None
    calls = upstream_headers(upstream, tag)
    assert len(calls) == 2
    stages = {name: span_id(next(s for s in children if s.name == name)) for name in ("draft", "strong")}
    assert [parent_of(item) for item in calls] == [(f"{root.context.trace_id:032x}", stages["draft"]),
                                                   (f"{root.context.trace_id:032x}", stages["strong"])]
    assert all("tracestate" not in item for item in calls), "no trace state to pass on"


def test_a_clients_traceparent_is_replaced_by_the_proxys_child(
        traced: tuple[BackgroundServer, InMemorySpanExporter], upstream: BackgroundServer) -> None:
    proxy, exporter = traced
    tag = marker()
    response = ask(proxy, tag, model="claude-sonnet-5", traceparent=CLIENT_PARENT, tracestate="vendor=opaque")
    assert response.status_code == 200
    _, children = trace_of(exporter, response.headers["x-request-id"])
    (call,) = upstream_headers(upstream, tag)
    assert parent_of(call) == (CLIENT_TRACE, span_id(next(s for s in children if s.name == "upstream")))
    assert call["traceparent"] != CLIENT_PARENT and call["tracestate"] == "vendor=opaque"
    openai = httpx.post(proxy.url + "/v1/chat/completions", timeout=30, headers={
        "authorization": "Bearer k", "traceparent": CLIENT_PARENT},
        json={"model": "claude-sonnet-5", "messages": [{"role": "user", "content": (other := marker())}]})
    assert openai.status_code == 200
    (crossed,) = upstream_headers(upstream, other)
    assert parent_of(crossed)[0] == CLIENT_TRACE, "another dialect's call joins the trace too"


def test_tracing_off_passes_headers_as_before(proxy: BackgroundServer, upstream: BackgroundServer) -> None:
    tag = marker()
    body: dict[str, Any] = {"model": "claude-sonnet-5", "max_tokens": 32, "messages": [{"role": "user",
                                                                                      "content": tag}]}
    response = httpx.post(proxy.url + "/v1/messages", json=body, timeout=30,
                          headers={**ANTHROPIC, "traceparent": CLIENT_PARENT, "tracestate": "vendor=opaque"})
    assert response.status_code == 200
    (call,) = upstream_headers(upstream, tag)
    assert call["traceparent"] == CLIENT_PARENT and call["tracestate"] == "vendor=opaque", "forwarded untouched"
    plain = marker()
    assert httpx.post(proxy.url + "/v1/messages", json={**body, "messages": [{"role": "user", "content": plain}]},
                      headers=ANTHROPIC, timeout=30).status_code == 200
    (call,) = upstream_headers(upstream, plain)
    assert "traceparent" not in call and "tracestate" not in call, "nothing added"


def test_outgoing_headers_outside_a_traced_request_are_a_copy() -> None:
    given = {"content-type": "application/json", "TraceParent": CLIENT_PARENT}
    assert outgoing_headers(given) == given and outgoing_headers(given) is not given
    token = begin(RequestRecord("req_1", "POST", "/v1/messages"))
    try:
        assert outgoing_headers(given) == given
    finally:
        end(token)
