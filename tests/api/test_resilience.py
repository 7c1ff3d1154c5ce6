"""Resilience through a real proxy: retries honour retry-after and stop at a stream's first byte, the breaker fails
fast in the client's dialect and half-opens, fallback models answer and are priced as themselves, timeouts, /ready
and a graceful shutdown that lets a stream finish."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pytest import approx

from router.app import create_app
from router.cli import main
from router.metrics import Metrics
from router.replay.answers import Answer, Fault, UpstreamRequest
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource, last_turn
from router.replay.server import create_upstream_app
from router.settings import Settings
from tests.support import ProxyFactory, marker, proxy_settings, received_with

ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
OPENAI = {"authorization": "Bearer k"}
COOLDOWN_S = 1.2  # long enough for a loaded machine to look at the open circuit, short enough for a fast test
FAST = {"retry": {"max_retries": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.05, "max_retry_after_s": 2.0},
        "breaker": {"failure_threshold": 2, "cooldown_s": COOLDOWN_S}}
NO_RETRY = {"retry": {"max_retries": 0}, "breaker": {"failure_threshold": 2, "cooldown_s": COOLDOWN_S}}


@dataclass
class Queued:
    """Answers scripted per marker, taken in turn; anything else is answered by the directive-scripted source."""

    plans: dict[str, list[Answer | Fault]] = field(default_factory=dict)
    scripted: ScriptedSource = field(default_factory=ScriptedSource)

    async def answer(self, request: UpstreamRequest) -> Answer | Fault:
        text = last_turn(request).text
        for tag, plan in self.plans.items():
            if tag in text and plan:
                return plan.pop(0)
        return await self.scripted.answer(request)


@dataclass(frozen=True)
class Flaky:
    server: BackgroundServer
    source: Queued


@pytest.fixture(scope="module")
def flaky() -> Iterator[Flaky]:
    source = Queued()
    with BackgroundServer(create_upstream_app(source)) as server:
        yield Flaky(server, source)


@pytest.fixture(scope="module")
def slow() -> Iterator[BackgroundServer]:
    """An upstream whose streams send an event every 0.1 s (about 0.8 s for a short answer)."""
    with BackgroundServer(create_upstream_app(ScriptedSource(), stream_delay_s=0.1)) as server:
        yield server


def ask(proxy: BackgroundServer, text: str, *, model: str = "claude-sonnet-4-5", stream: bool = False,
        headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": model, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": text}]}
    return httpx.post(proxy.url + "/v1/messages", json=body, headers={**ANTHROPIC, **(headers or {})}, timeout=30)


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    """The data of each event of an Anthropic stream."""
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def metrics(proxy: BackgroundServer) -> Metrics:
    services: Any = proxy.app.state.services  # type: ignore[attr-defined]
    return services.metrics  # type: ignore[no-any-return]


# retries


@pytest.mark.parametrize("stream", [False, True])
def test_a_529_then_200_is_retried_once_honouring_retry_after(proxy_factory: ProxyFactory, flaky: Flaky,
                                                              stream: bool) -> None:
    proxy, tag = proxy_factory(proxy_settings(flaky.server.url, resilience=FAST)), marker()
    flaky.source.plans[tag] = [Fault(status=529, retry_after="0.3"), Answer(text="second time lucky")]
    started = time.perf_counter()
    reply = ask(proxy, tag, stream=stream)
    assert reply.status_code == 200
    assert time.perf_counter() - started >= 0.3, "the provider's retry-after was waited for"
    text = reply.text if stream else reply.json()["content"][0]["text"]
    assert "second time lucky" in text.replace('"text":"', "").replace('"}', "") or "lucky" in text
    if stream:
        assert sse(reply)[-1]["type"] == "message_stop"
    assert len(received_with(flaky.server, tag)) == 2
    assert metrics(proxy).value("cascadeflow_upstream_retries_total", provider="anthropic", reason="529") == 1


def test_a_stream_broken_after_its_first_byte_is_not_retried(proxy_factory: ProxyFactory, flaky: Flaky) -> None:
    proxy, tag = proxy_factory(proxy_settings(flaky.server.url, resilience=FAST)), marker()
    flaky.source.plans[tag] = [Fault(break_stream_after=3, answer=Answer(text="a b c d e f g h")), Answer()]
    reply = ask(proxy, tag, stream=True)
    assert reply.status_code == 200
    events = sse(reply)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "error", "the client is told, once"
    assert len(received_with(flaky.server, tag)) == 1, "never retried after the first byte"
    found = metrics(proxy)
    assert found.value("cascadeflow_upstream_retries_total", provider="anthropic", reason="connection") == 0
    assert found.value("cascadeflow_upstream_call_errors_total", provider="anthropic", reason="connection") == 1


def test_a_retry_after_over_the_cap_is_relayed_at_once(proxy_factory: ProxyFactory, flaky: Flaky) -> None:
    proxy, tag = proxy_factory(proxy_settings(flaky.server.url, resilience=FAST)), marker()
    started = time.perf_counter()
    reply = ask(proxy, f"{tag} [[status:429 retry:30]]")
    assert reply.status_code == 429 and reply.headers["retry-after"] == "30"
    assert time.perf_counter() - started < 2 and len(received_with(flaky.server, tag)) == 1


# the circuit breaker, /ready


def test_the_breaker_opens_fails_fast_in_each_dialect_and_half_opens(proxy_factory: ProxyFactory,
                                                                       flaky: Flaky) -> None:
    proxy = proxy_factory(proxy_settings(flaky.server.url, resilience=NO_RETRY))
    for _ in range(2):
        assert ask(proxy, f"{marker()} [[status:503]]").status_code == 503
    tag = marker()
    refused = ask(proxy, tag)
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["type"] == "error" and refused.json()["error"]["type"] == "overloaded_error"
    assert "anthropic" in refused.json()["error"]["message"] and flaky.server.url not in refused.text
    chat = httpx.post(proxy.url + "/v1/chat/completions", headers=OPENAI, timeout=30,
                      json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": tag}]})
    assert chat.status_code == 503 and chat.json()["error"]["type"] == "overloaded_error"
    assert received_with(flaky.server, tag) == [], "an open circuit calls nobody"
    assert ask(proxy, tag, model="gpt-4o-mini").status_code == 200, "other providers have circuits of their own"
    ready = httpx.get(proxy.url + "/ready")
    check = ready.json()["checks"]["provider:anthropic"]
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert check["ok"] is False and check["state"] == "open" and check["consecutive_failures"] == 2
    assert "last_error" not in check and "base_url" not in check and flaky.server.url not in ready.text
    time.sleep(COOLDOWN_S)
    assert ask(proxy, tag).status_code == 200, "after the cool-down one probe goes through, and closes it"
    assert ask(proxy, tag).status_code == 200
    found = metrics(proxy)
    for state in ("open", "half_open", "closed"):
        assert found.value("cascadeflow_upstream_circuit_transitions_total", provider="anthropic", state=state) == 1
    scraped = httpx.get(proxy.url + "/metrics").text
    assert 'cascadeflow_upstream_circuit_open{provider="anthropic"} 0.0' in scraped
    labels = {line.split('provider="')[1].split('"')[0] for line in scraped.splitlines() if 'provider="' in line}
    assert labels <= {"anthropic", "openai", "chatonly"}, "provider labels are configured names only"


def test_ready_turns_not_ready_while_the_only_provider_fails(proxy_factory: ProxyFactory, flaky: Flaky) -> None:
    settings = proxy_settings(flaky.server.url, resilience=NO_RETRY,
                              providers={"anthropic": {"base_url": flaky.server.url, "api_key": "sk-proxy-a"}},
                              models=[{"match": "claude-*", "provider": "anthropic"}])
    proxy = proxy_factory(settings)
    assert httpx.get(proxy.url + "/ready").status_code == 200
    for _ in range(2):
        assert ask(proxy, f"{marker()} [[status:529]]").status_code == 529
    ready = httpx.get(proxy.url + "/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["providers"] == {"ok": False, "required": True, "answering": 0, "configured": 1}
    assert flaky.server.url not in ready.text and "529" not in ready.text, "no upstream URL or error for anyone"
    time.sleep(COOLDOWN_S)
    assert httpx.get(proxy.url + "/ready").status_code == 200, "half-open: ready for traffic to probe it"


def test_a_draft_whose_circuit_is_open_fails_fast_and_escalates(proxy_factory: ProxyFactory, flaky: Flaky) -> None:
    rule = {"request_model": "smart", "draft_model": "claude-haiku-4-5", "verifier_model": "gpt-4o-mini"}
    proxy = proxy_factory(proxy_settings(flaky.server.url, resilience=NO_RETRY, cascade_rules=[rule]))
    for _ in range(2):
        ask(proxy, f"{marker()} [[status:500]]", model="claude-haiku-4-5")
    tag = marker()
    reply = ask(proxy, tag, model="smart")
    assert reply.status_code == 200 and reply.headers["x-cascadeflow-draft-accepted"] == "failed"
    assert [item["body"]["model"] for item in received_with(flaky.server, tag)] == ["gpt-4o-mini"]


# fallback models


PRICES = {"claude-opus-4-1": {"input": 100.0, "output": 200.0}, "gpt-4o-mini": {"input": 1.0, "output": 2.0},
          "claude-haiku-4-5": {"input": 3.0, "output": 5.0}}


def usage_of(reply: httpx.Response, stream: bool) -> tuple[int, int]:
    if not stream:
        usage = reply.json()["usage"]
        return usage["input_tokens"], usage["output_tokens"]
    events = sse(reply)
    start = next(e for e in events if e["type"] == "message_start")["message"]["usage"]
    end = next(e for e in events if e["type"] == "message_delta")["usage"]
    return end.get("input_tokens") or start["input_tokens"], end["output_tokens"]  # a translated stream's at its end


@pytest.mark.parametrize("stream", [False, True])
def test_a_rules_fallback_answers_and_is_priced_as_itself(proxy_factory: ProxyFactory, flaky: Flaky,
                                                          stream: bool) -> None:
    rule = {"request_model": "smart", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-1",
            "fallback_models": ["gpt-4o-mini"]}
    proxy = proxy_factory(proxy_settings(flaky.server.url, resilience=FAST, cascade_rules=[rule], model_info={
        name: {"prices": prices} for name, prices in PRICES.items()}))
    tag, spent = marker(), metrics(proxy).value("cascadeflow_cost_usd_total", kind="actual")
    reply = ask(proxy, f"{tag} [[fail:claude-opus-4-1 status:529]]", model="smart", stream=stream,
                headers={"x-cascadeflow-force": "strong"})
    assert reply.status_code == 200 and reply.headers["x-cascadeflow-fallback-model"] == "gpt-4o-mini"
    called = [item["body"]["model"] for item in received_with(flaky.server, tag)]
    assert called == ["claude-opus-4-1"] * 2 + ["gpt-4o-mini"], "retried until its circuit opened, then the fallback"
    tokens_in, tokens_out = usage_of(reply, stream)
    expected = (tokens_in * 1.0 + tokens_out * 2.0) / 1e6
    if not stream:
        assert float(reply.headers["x-cascadeflow-actual-cost"]) == approx(expected, abs=1e-8)
    deadline = time.monotonic() + 5
    while metrics(proxy).value("cascadeflow_cost_usd_total", kind="actual") - spent < expected * 0.999:
        assert time.monotonic() < deadline, "the fallback's spend was never posted"
        time.sleep(0.02)
    assert metrics(proxy).value("cascadeflow_cost_usd_total", kind="actual") - spent == approx(expected, abs=1e-9)
    assert metrics(proxy).value("cascadeflow_fallbacks_total", model="gpt-4o-mini") == 1


def test_a_routes_fallback_serves_pass_through_but_not_a_bad_request(proxy_factory: ProxyFactory,
                                                                      flaky: Flaky) -> None:
    models = [{"match": "claude-opus-*", "provider": "anthropic", "fallback_models": ["claude-haiku-4-5"]},
              {"match": "claude-*", "provider": "anthropic"}]
    proxy = proxy_factory(proxy_settings(flaky.server.url, resilience=NO_RETRY, models=models))
    tag = marker()
    reply = ask(proxy, f"{tag} [[fail:claude-opus-4-1]]", model="claude-opus-4-1", stream=True)
    assert reply.status_code == 200 and reply.headers["x-cascadeflow-fallback-model"] == "claude-haiku-4-5"
    assert sse(reply)[-1]["type"] == "message_stop"
    refused = marker()
    assert ask(proxy, f"{refused} [[fail:claude-opus-4-1 status:400]]", model="claude-opus-4-1").status_code == 400
    assert [item["body"]["model"] for item in received_with(flaky.server, refused)] == ["claude-opus-4-1"]


# timeouts


def test_a_stream_with_no_first_byte_in_time_is_a_timeout(proxy_factory: ProxyFactory, flaky: Flaky) -> None:
    settings = proxy_settings(flaky.server.url, resilience=NO_RETRY)
    providers = {name: {**p.model_dump(), "api_key": "k"} for name, p in settings.providers.items()}
    providers["anthropic"]["first_byte_timeout_s"] = 0.3
    proxy = proxy_factory(proxy_settings(flaky.server.url, resilience=NO_RETRY, providers=providers))
    started = time.perf_counter()
    reply = ask(proxy, f"{marker()} [[delay:1]]", stream=True)
    assert reply.status_code == 504 and reply.json()["error"]["type"] == "timeout_error"
    assert time.perf_counter() - started < 0.9


def test_a_stream_over_its_total_time_is_cut_with_an_error(proxy_factory: ProxyFactory,
                                                           slow: BackgroundServer) -> None:
    settings = proxy_settings(slow.url, resilience=NO_RETRY)
    providers = {name: {**p.model_dump(), "api_key": "k"} for name, p in settings.providers.items()}
    providers["anthropic"]["total_timeout_s"] = 0.35
    proxy = proxy_factory(proxy_settings(slow.url, resilience=NO_RETRY, providers=providers))
    started = time.perf_counter()
    reply = ask(proxy, "a few words here", stream=True)
    events = sse(reply)
    assert reply.status_code == 200 and events[0]["type"] == "message_start" and events[-1]["type"] == "error"
    assert time.perf_counter() - started < 2


# graceful shutdown


def test_shutdown_lets_a_stream_in_flight_finish(slow: BackgroundServer) -> None:
    proxy = BackgroundServer(create_app(proxy_settings(slow.url)), graceful_shutdown_s=5).start()
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "a few words here"}]}
    received: list[bytes] = []
    begun = threading.Event()

    def read() -> None:
        with httpx.stream("POST", proxy.url + "/v1/messages", json=body, headers=ANTHROPIC, timeout=10) as reply:
            for chunk in reply.iter_bytes():
                received.append(chunk)
                begun.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert begun.wait(5)
    proxy.stop()  # asks uvicorn to exit while the stream is still on its way
    reader.join(5)
    text = b"".join(received).decode()
    assert "event: message_stop" in text and "event: error" not in text
    with pytest.raises(httpx.ConnectError):
        httpx.get(proxy.url + "/health")


def test_proxy_start_gives_uvicorn_the_grace_period(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[uvicorn.Config] = []

    class Server:
        started = True

        def __init__(self, config: uvicorn.Config) -> None:
            seen.append(config)

        def run(self, sockets: Any = None) -> None:
            pass

    monkeypatch.setattr(uvicorn, "Server", Server)
    config = tmp_path / "config.yaml"
    config.write_text("server: {shutdown_grace_s: 6.5}\noutcome_log: {enabled: false}\nembedding: {enabled: false}\n")
    assert main(["proxy", "start", "--config", str(config), "--port", "0"]) == 0
    assert [c.timeout_graceful_shutdown for c in seen] == [4]  # of 6.5 s; the rest is the stop's (router/shutdown.py)


# settings


def test_settings_defaults_overrides_and_fallback_references() -> None:
    defaults = Settings()
    assert defaults.resilience.retry.max_retries == 2 and defaults.resilience.breaker.enabled
    assert defaults.server.shutdown_grace_s == 30
    settings = proxy_settings("http://127.0.0.1:1")
    assert settings.providers["anthropic"].retry is None
    with pytest.raises(ValueError, match=r"cascade_rules\.0\.fallback_models\.0: unknown provider 'nowhere'"):
        proxy_settings("http://127.0.0.1:1", cascade_rules=[{"request_model": "x", "draft_model": "claude-a",
                                                             "verifier_model": "claude-b",
                                                             "fallback_models": ["nowhere/model"]}])
    with pytest.raises(ValueError, match="initial_backoff_s"):
        proxy_settings("http://127.0.0.1:1", resilience={"retry": {"initial_backoff_s": 9, "max_backoff_s": 1}})
