"""Errors in the client's dialect: bad input never reaches the upstream; upstream faults are relayed."""

from __future__ import annotations

import socket
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from router.auth import hash_key
from router.replay.runner import BackgroundServer
from tests.support import ProxyFactory, marker, proxy_settings, received_with

ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"}
OPENAI_HEADERS = {"authorization": "Bearer k", "content-type": "application/json"}


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"]
    assert body["request_id"].startswith("req_")


def assert_openai_error(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and error["message"] and "param" in error and "code" in error


def test_malformed_json_is_400_in_each_dialect(proxy: BackgroundServer) -> None:
    assert_anthropic_error(httpx.post(f"{proxy.url}/v1/messages", content=b"{nope", headers=ANTHROPIC_HEADERS),
                           400, "invalid_request_error")
    assert_openai_error(httpx.post(f"{proxy.url}/v1/chat/completions", content=b"[1,", headers=OPENAI_HEADERS),
                        400, "invalid_request_error")
    assert_openai_error(httpx.post(f"{proxy.url}/v1/responses", content=b"[]", headers=OPENAI_HEADERS),
                        400, "invalid_request_error")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/messages", {"model": "claude-x", "messages": [{"role": "user", "content": "TAG"}]}, "max_tokens"),
        ("/v1/messages", {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "robot", "content": "TAG"}]},
         "messages.0.role"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "TAG"}]}, "model"),
        ("/v1/chat/completions", {"model": "gpt-x", "messages": "TAG"}, "messages"),
        ("/v1/responses", {"model": "gpt-x", "instructions": "TAG"}, "input"),
        ("/v1/messages/count_tokens", {"model": "claude-x", "messages": [{"role": "user", "content": 5}],
                                       "system": "TAG"}, "messages.0.content"),
    ],
)
def test_invalid_request_never_reaches_upstream(proxy: BackgroundServer, upstream: BackgroundServer, path: str,
                                                body: dict[str, Any], param: str) -> None:
    tag = marker()
    payload = httpx.Request("POST", "/", json=body).content.replace(b"TAG", tag.encode())
    headers = ANTHROPIC_HEADERS if "messages" in path and "chat" not in path else OPENAI_HEADERS
    response = httpx.post(proxy.url + path, content=payload, headers=headers)
    assert response.status_code == 400
    assert param in response.text
    assert received_with(upstream, tag) == []


def test_unknown_path_is_404_in_dialect(proxy: BackgroundServer) -> None:
    assert_anthropic_error(httpx.post(f"{proxy.url}/v1/nothing", headers=ANTHROPIC_HEADERS), 404, "not_found_error")
    assert_openai_error(httpx.get(f"{proxy.url}/v1/nothing", headers=OPENAI_HEADERS), 404, "not_found_error")


def test_probe_and_health_endpoints(proxy: BackgroundServer) -> None:
    assert httpx.head(proxy.url + "/").status_code == 200
    assert httpx.get(proxy.url + "/?x=1").status_code == 200
    assert httpx.get(proxy.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(proxy.url + "/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_body_over_limit_is_413(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    small = proxy_factory(proxy_settings(upstream.url, server={"max_body_bytes": 4096}))
    big = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 10_000}]}
    assert_anthropic_error(httpx.post(f"{small.url}/v1/messages", json=big, headers=ANTHROPIC_HEADERS),
                           413, "request_too_large")
    chunked = httpx.post(f"{small.url}/v1/chat/completions", headers=OPENAI_HEADERS,
                         content=iter([b'{"model":"gpt-x","messages":[{"role":"user","content":"',
                                       b"y" * 9000, b'"}]}']))
    assert chunked.status_code == 413


def test_the_default_body_limit_is_anthropics(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    proxy = proxy_factory(proxy_settings(upstream.url))
    declared = {**ANTHROPIC_HEADERS, "content-length": str(32 * 1024 * 1024 + 1)}
    over = httpx.post(f"{proxy.url}/v1/messages", headers=declared, content=b"{}" + b" " * (32 * 1024 * 1024 - 1))
    assert_anthropic_error(over, 413, "request_too_large")


def test_proxy_keys(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    keyed = proxy_factory(proxy_settings(upstream.url, auth={"keys": [{"key_sha256": hash_key("good"),
                                                                          "user": "alice"}]}))
    body = {"model": "claude-sonnet-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert_anthropic_error(httpx.post(f"{keyed.url}/v1/messages", json=body, headers=ANTHROPIC_HEADERS),
                           401, "authentication_error")
    assert_openai_error(httpx.get(f"{keyed.url}/v1/models", headers=OPENAI_HEADERS), 401, "authentication_error")
    tag = marker()
    body["messages"] = [{"role": "user", "content": tag}]
    good = anthropic.Anthropic(base_url=keyed.url, api_key="good", max_retries=0)
    good.messages.create(**body)
    (seen,) = received_with(upstream, tag)
    assert seen["headers"].get("x-api-key") == "sk-proxy-anthropic"
    assert "good" not in str(seen["headers"]), "a proxy key is never forwarded"


@pytest.mark.parametrize("model", ["claude-sonnet-5", "gpt-4o-mini"])
def test_upstream_overload_and_rate_limit_relayed_to_anthropic_client(proxy: BackgroundServer, model: str) -> None:
    client = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "[[status:529]]"}])
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=model, max_tokens=5,
                               messages=[{"role": "user", "content": "[[status:429 retry:7]]"}])
    assert limited.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-5"])
def test_upstream_rate_limit_relayed_to_openai_client(proxy: BackgroundServer, model: str) -> None:
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "[[status:429 retry:7]]"}])
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body["type"] == "rate_limit_error"  # type: ignore[index]


def test_upstream_timeout_is_504_and_unreachable_is_502(proxy_factory: ProxyFactory,
                                                        upstream: BackgroundServer) -> None:
    settings = proxy_settings(upstream.url)
    providers: dict[str, Any] = {name: provider.model_dump() for name, provider in settings.providers.items()}
    for provider in providers.values():
        provider["api_key"] = "k"
    providers["anthropic"]["read_timeout_s"] = 0.5
    providers["openai"]["base_url"] = "http://127.0.0.1:9/v1"
    faulty = proxy_factory(proxy_settings(upstream.url, providers=providers))
    body = {"model": "claude-sonnet-5", "max_tokens": 5, "messages": [{"role": "user", "content": "[[delay:3]]"}]}
    assert_anthropic_error(httpx.post(f"{faulty.url}/v1/messages", json=body, headers=ANTHROPIC_HEADERS),
                           504, "timeout_error")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert_openai_error(httpx.post(f"{faulty.url}/v1/chat/completions", json=chat, headers=OPENAI_HEADERS),
                        502, "api_error")


def sse_frames(response: httpx.Response) -> list[str]:
    return [frame for frame in response.text.split("\n\n") if frame.strip()]


@pytest.mark.parametrize("directive", ["[[break:4]]", "[[error_event:4]]"])
@pytest.mark.parametrize("model", ["claude-sonnet-5", "gpt-4o-mini"])
def test_mid_stream_failure_ends_with_anthropic_error_event(proxy: BackgroundServer, model: str,
                                                            directive: str) -> None:
    body = {"model": model, "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": f"a long answer {directive}"}]}
    response = httpx.post(f"{proxy.url}/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200
    frames = sse_frames(response)
    assert frames[0].startswith("event: message_start")
    assert frames[-1].startswith("event: error") and '"type":"error"' in frames[-1].replace(" ", "")
    assert not any(frame.startswith("event: message_stop") for frame in frames)


@pytest.mark.parametrize("directive", ["[[break:4]]", "[[error_event:4]]"])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-5"])
def test_mid_stream_failure_ends_with_openai_error(proxy: BackgroundServer, model: str, directive: str) -> None:
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model=model, stream=True,
                                                messages=[{"role": "user", "content": f"long {directive}"}]):
            pass


def test_every_429_of_the_openai_dialect_has_the_rate_limit_code(proxy_factory: ProxyFactory,
                                                                 upstream: BackgroundServer) -> None:
    """The proxy's own 429s (the rate limiter's, the body cap's, an Anthropic upstream's translated) agree on
    OpenAI's code; an OpenAI upstream's own body is relayed as it came."""
    patient, limited = "key-patient-" + marker(), "key-limited-" + marker()
    keys = [{"key_sha256": hash_key(patient), "user": "patient"},
            {"key_sha256": hash_key(limited), "user": "limited", "rpm": 1}]
    proxy = proxy_factory(proxy_settings(upstream.url, server={"max_inflight_body_bytes": 64 * 1024},
                                         auth={"keys": keys}))

    def chat(key: str, text: str, path: str = "/v1/chat/completions", model: str = "gpt-4o-mini") -> httpx.Response:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
        if path == "/v1/responses":
            body = {"model": "gpt-4o-mini", "input": text}
        return httpx.post(proxy.url + path, json=body, timeout=30, headers={"authorization": f"Bearer {key}"})

    assert chat(limited, "hi").status_code == 200
    refusals = {"rate limiter": chat(limited, "hi again"),
                "upstream (translated)": chat(patient, "[[status:429 retry:2]]", model="claude-sonnet-5")}
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as slow:  # 40 KB declared, then held
        slow.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: " + patient.encode() +
                     b"\r\ncontent-type: application/json\r\ncontent-length: 40000\r\n\r\n{")
        bodies = proxy.app.state.services.bodies  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while bodies.in_flight < 40_000:
            assert time.monotonic() < deadline, "the slow body was never held"
            time.sleep(0.01)
        refusals["body cap (chat)"] = chat(patient, "x" * 30_000)
        refusals["body cap (responses)"] = chat(patient, "x" * 30_000, "/v1/responses")
    for source, refusal in refusals.items():
        assert refusal.status_code == 429 and refusal.headers["retry-after"], (source, refusal.text)
        error = refusal.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded"), (source, error)
