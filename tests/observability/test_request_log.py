"""Request ids on every answer, and the one JSON log line per request: its fields, and no key or text in it."""

from __future__ import annotations

import io
import logging
from typing import Any

import httpx
import pytest

from router.auth import hash_key
from router.observability.logs import JsonLines, TextLines, configure_logging, logging_configured
from router.observability.middleware import accepted_request_id
from router.observability.settings import LoggingSettings
from router.replay.runner import BackgroundServer
from tests.observability.conftest import LogLines, request_line
from tests.support import ProxyFactory, marker, proxy_settings

ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
OPENAI = {"authorization": "Bearer k"}
RULES = [{"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
          "quality_threshold": 0.6}]
PROXY_KEY = "cfr-live-" + "s3cr3t" * 6


@pytest.fixture(scope="module")
def cascade(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> BackgroundServer:
    return proxy_factory(proxy_settings(upstream.url, cascade_rules=RULES))


def ask(proxy: BackgroundServer, text: str, model: str = "claude-opus-4-8", headers: dict[str, str] | None = None,
        **extra: Any) -> httpx.Response:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(proxy.url + "/v1/messages", json=body, headers=headers or ANTHROPIC, timeout=30)


def test_every_answer_carries_its_own_request_id(proxy: BackgroundServer) -> None:
    answered = ask(proxy, marker(), model="claude-sonnet-5")
    chat = httpx.post(proxy.url + "/v1/chat/completions", headers=OPENAI, timeout=30,
                      json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": marker()}]})
    refused = httpx.post(proxy.url + "/v1/messages", content=b"{nope", headers=ANTHROPIC)
    missing = httpx.get(proxy.url + "/no/such/path")
    probe = httpx.get(proxy.url + "/health")
    responses = [answered, chat, refused, missing, probe]
    assert [r.status_code for r in responses] == [200, 200, 400, 404, 200]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(each.startswith("req_") for each in ids) and len(set(ids)) == len(ids)
    assert refused.json()["request_id"] == refused.headers["x-request-id"], "the error body names the same id"
    assert answered.headers["request-id"] != answered.headers["x-request-id"], "Anthropic's own id is kept"
    assert chat.headers["x-upstream-request-id"].startswith("req_"), "OpenAI's own id is moved aside"
    assert chat.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize("sent", ["trace-42.a:b/c", "0f6a0c6e-6b8e-4bd4-9d2a-1c4c0c7a1d55"])
def test_a_valid_client_request_id_is_used_and_returned(proxy: BackgroundServer, sent: str) -> None:
    answered = ask(proxy, marker(), model="claude-sonnet-5", headers={**ANTHROPIC, "x-request-id": sent})
    refused = httpx.post(proxy.url + "/v1/messages", content=b"{", headers={**ANTHROPIC, "x-request-id": sent})
    assert answered.headers["x-request-id"] == sent
    assert refused.headers["x-request-id"] == sent and refused.json()["request_id"] == sent


@pytest.mark.parametrize("sent", ["two words", "x" * 129, "-leading-dash", "semi;colon", ""])
def test_an_unsafe_client_request_id_is_replaced(proxy: BackgroundServer, sent: str) -> None:
    answered = ask(proxy, marker(), model="claude-sonnet-5", headers={**ANTHROPIC, "x-request-id": sent})
    assert answered.headers["x-request-id"].startswith("req_")
    assert accepted_request_id([(b"x-request-id", sent.encode())]) is None


def test_one_line_per_request_with_route_models_costs_and_timings(cascade: BackgroundServer,
                                                                   json_log: LogLines) -> None:
    accepted = ask(cascade, f"What is 2+2? {marker()}")
    escalated = ask(cascade, f"{marker()} [[weak:claude-haiku-4-5]]", stream=True)
    passed = ask(cascade, marker(), model="claude-sonnet-5")
    failed = ask(cascade, f"{marker()} [[status:529]]", model="claude-sonnet-5")
    assert [r.status_code for r in (accepted, escalated, passed, failed)] == [200, 200, 200, 529]

    line = request_line(json_log, accepted.headers["x-request-id"])
    assert line["logger"] == "router.requests" and line["level"] == "INFO" and "time" in line
    assert line["method"] == "POST" and line["path"] == "/v1/messages" and line["status"] == 200
    assert (line["endpoint"], line["dialect"], line["stream"]) == ("messages", "anthropic", False)
    assert line["route"] == "draft" and line["draft_status"] == "accepted"
    assert (line["draft_model"], line["strong_model"], line["served_model"]) == (
        "claude-haiku-4-5", "claude-opus-4-8", "claude-haiku-4-5")
    assert line["cost_usd"] == pytest.approx(float(accepted.headers["x-cascadeflow-actual-cost"]))
    assert line["saved_usd"] > 0 and line["strong_only_usd"] > line["cost_usd"]
    assert line["tenant"].startswith("key:") and line["input_tokens"] > 0 and line["confidence"] >= 0.6
    assert set(line["stages_ms"]) == {"classify", "draft", "score"}
    assert line["duration_ms"] >= line["stages_ms"]["draft"]

    line = request_line(json_log, escalated.headers["x-request-id"])
    assert line["route"] == "escalated" and line["draft_status"] == "rejected" and line["stream"] is True
    assert line["wasted_draft_usd"] > 0 and line["served_model"] == "claude-opus-4-8"
    assert set(line["stages_ms"]) == {"classify", "draft", "score", "strong"} and line["first_byte_ms"] > 0

    line = request_line(json_log, passed.headers["x-request-id"])
    assert line["route"] == "pass_through" and "draft_model" not in line and set(line["stages_ms"]) == {"upstream"}

    line = request_line(json_log, failed.headers["x-request-id"])
    assert line["status"] == 529 and line["route"] == "failed" and line["level"] == "WARNING" and line["error"]


def test_the_cascades_own_lines_appear_with_the_request_id(cascade: BackgroundServer, json_log: LogLines) -> None:
    response = ask(cascade, f"{marker()} [[fail:claude-haiku-4-5]]")
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    request_line(json_log, request_id)
    own = [line for line in json_log() if line["logger"] == "router.pipeline.draft"]
    assert any(line.get("request_id") == request_id and "draft failed" in line["message"] for line in own), own


def test_no_key_and_no_text_is_logged_unless_content_is_asked_for(proxy_factory: ProxyFactory,
                                                                   upstream: BackgroundServer,
                                                                   json_log: LogLines) -> None:
    auth = {"keys": [{"key_sha256": hash_key(PROXY_KEY), "user": "alice"}]}
    keyed = proxy_factory(proxy_settings(upstream.url, cascade_rules=RULES, auth=auth))
    verbose = proxy_factory(proxy_settings(upstream.url, cascade_rules=RULES, auth=auth,
                                           logging={"include_content": True}))
    secret_text, shown_text = marker(), marker()
    headers = {"x-api-key": PROXY_KEY, "anthropic-version": "2023-06-01"}
    served = [ask(keyed, f"What is 2+2? {secret_text}", headers=headers),
              ask(keyed, f"{secret_text} [[weak:claude-haiku-4-5]]", headers=headers, stream=True),
              ask(keyed, f"{secret_text} [[status:500]]", model="claude-sonnet-5", headers=headers),
              ask(keyed, secret_text, headers={**headers, "x-api-key": PROXY_KEY + "x"})]
    assert [r.status_code for r in served] == [200, 200, 500, 401]
    lines = [request_line(json_log, r.headers["x-request-id"]) for r in served]
    assert lines[0]["tenant"] == "user:alice" and lines[0]["key_id"].startswith("cfg-") and "content" not in lines[0]
    shown = ask(verbose, f"What is 2+2? {shown_text}", headers=headers)
    content = request_line(json_log, shown.headers["x-request-id"])["content"]
    assert shown_text in content["prompt"] and content["answer"] == "Hello from claude-haiku-4-5."
    everything = "\n".join(str(line) for line in json_log())
    assert shown_text in everything, "the positive control: text does reach the log when asked for"
    for secret in (secret_text, PROXY_KEY, "sk-proxy-anthropic", "sk-proxy-openai"):
        assert secret not in everything, secret


def test_json_lines_are_the_default_off_a_terminal_and_text_on_one() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        for stream, expected in ((io.StringIO(), JsonLines), (Terminal(), TextLines)):
            configure_logging(LoggingSettings(), "info", stream=stream)
            ours = [each for each in root.handlers if each not in handlers]
            assert len(ours) == 1 and isinstance(ours[0].formatter, expected)
        configure_logging(LoggingSettings(format="json", level="warning"), "debug", stream=Terminal())
        assert isinstance(root.handlers[-1].formatter, JsonLines) and root.level == logging.WARNING
    finally:
        for handler in [each for each in root.handlers if each not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_a_text_line_shows_the_request_fields() -> None:
    record = logging.LogRecord("router.requests", logging.INFO, __file__, 1, "POST /v1/messages 200 draft 12 ms",
                               None, None)
    record.fields = {"event": "request", "request_id": "req_1", "route": "draft", "cost_usd": 0.001}
    line = TextLines().format(record)
    assert line.endswith("POST /v1/messages 200 draft 12 ms request_id=req_1 route=draft cost_usd=0.001")


def test_the_command_lines_logging_ends_with_its_serving() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with logging_configured(LoggingSettings(format="json", level="debug"), "info"):
        assert len(root.handlers) == len(handlers) + 1 and root.level == logging.DEBUG
    assert root.handlers == handlers and root.level == level, "an in-process `proxy start` leaves no handler behind"
