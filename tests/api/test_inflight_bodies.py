"""The bytes of request bodies in flight are capped (`server.max_inflight_body_bytes`): a body that would pass the
cap gets a 429 in its client's dialect (413 when it alone is over it), before it counts against a rate limit or
reaches the upstream; and the bytes held return to 0 after every kind of end: an answer (streamed too), an error,
a client gone mid-body or while its answer was awaited."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from router.auth import hash_key
from router.bodies import BodyBudget
from router.errors import BodiesInFlightError, PayloadTooLargeError
from router.metrics import Metrics
from router.replay.runner import BackgroundServer
from router.services import Services
from tests.support import ProxyFactory, marker, proxy_settings, received_with

CAP = 64 * 1024
FIRST, SECOND = "key-first-" + marker(), "key-second-" + marker()
ANTHROPIC = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def services_of(proxy: BackgroundServer) -> Services:
    services: Services = proxy.app.state.services  # type: ignore[attr-defined]
    return services


def held(proxy: BackgroundServer) -> int:
    return services_of(proxy).bodies.in_flight


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def anthropic_body(size: int, text: str = "", **extra: Any) -> bytes:
    """An Anthropic Messages body of exactly `size` bytes."""
    body = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": text}], **extra}
    padding = size - len(json.dumps(body).encode())
    body["messages"][0]["content"] = text + " " * padding
    encoded = json.dumps(body).encode()
    assert len(encoded) == size
    return encoded


def head(path: str, key: str, length: int | None) -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
            f"content-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def status_of(sock: socket.socket) -> int:
    """The status of the answer on a raw connection, read to its end."""
    sock.settimeout(30)
    data = b""
    while block := sock.recv(65536):
        data += block
    return int(data.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def capped(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> BackgroundServer:
    keys = [{"key_sha256": hash_key(FIRST), "user": "first"}, {"key_sha256": hash_key(SECOND), "user": "second",
                                                               "rpm": 1}]
    return proxy_factory(proxy_settings(upstream.url, server={"max_inflight_body_bytes": CAP},
                                        auth={"keys": keys}))


@pytest.fixture
def connections() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def connect(proxy: BackgroundServer, opened: list[socket.socket]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    opened.append(sock)
    return sock


def test_bodies_past_the_cap_get_the_dialects_429_and_change_nothing(
        capped: BackgroundServer, upstream: BackgroundServer, connections: list[socket.socket]) -> None:
    metrics = services_of(capped).metrics
    refused_before = metrics.value("cascadeflow_body_refusals_total", reason="in_flight")
    first = anthropic_body(40_000, marker())
    slow = connect(capped, connections)
    slow.sendall(head("/v1/messages", FIRST, len(first)) + first[:1000])  # declared, then held while it arrives
    wait_until(lambda: held(capped) == len(first), "the first body's declared length to be held")

    tag = marker()
    anthropic = httpx.post(capped.url + "/v1/messages", content=anthropic_body(30_000, tag),
                           headers={**ANTHROPIC, "x-api-key": SECOND})
    assert anthropic.status_code == 429 and anthropic.headers["retry-after"] == "1"
    body = anthropic.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "retry shortly" in body["error"]["message"] and anthropic.headers["request-id"] == body["request_id"]
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": tag + " " * 30_000}]}
    openai = httpx.post(capped.url + "/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {SECOND}"})
    assert openai.status_code == 429 and openai.headers["retry-after"] == "1" and "x-request-id" in openai.headers
    error = openai.json()["error"]
    assert error["type"] == "rate_limit_error" and error["message"] and "param" in error
    assert held(capped) == len(first), "a refused body holds nothing"
    assert metrics.value("cascadeflow_body_refusals_total", reason="in_flight") == refused_before + 2

    slow.sendall(first[1000:])
    assert status_of(slow) == 200
    wait_until(lambda: held(capped) == 0, "the bytes held to return to 0 after the answer")
    assert received_with(upstream, tag) == [], "a refused request never reaches the upstream"
    again = httpx.post(capped.url + "/v1/messages", content=anthropic_body(30_000, tag),
                       headers={**ANTHROPIC, "x-api-key": SECOND})
    assert again.status_code == 200, "the refusals did not count against the key's 1 request a minute"


def test_one_body_over_the_cap_alone_is_413(capped: BackgroundServer) -> None:
    metrics = services_of(capped).metrics
    before = metrics.value("cascadeflow_body_refusals_total", reason="too_large")
    over = httpx.post(capped.url + "/v1/messages", content=anthropic_body(CAP + 1),
                      headers={**ANTHROPIC, "x-api-key": FIRST})
    assert over.status_code == 413 and over.json()["error"]["type"] == "request_too_large"
    assert "for all request bodies in flight" in over.json()["error"]["message"]
    chunked = httpx.post(capped.url + "/v1/messages", headers={**ANTHROPIC, "x-api-key": FIRST},
                         content=iter([anthropic_body(CAP + 1)[:CAP // 2], anthropic_body(CAP + 1)[CAP // 2:]]))
    assert chunked.status_code == 413
    assert metrics.value("cascadeflow_body_refusals_total", reason="too_large") == before + 2
    assert held(capped) == 0


def test_chunked_bodies_count_as_they_arrive_and_a_client_gone_mid_body_gives_them_back(
        capped: BackgroundServer, connections: list[socket.socket]) -> None:
    first = anthropic_body(40_000)
    slow = connect(capped, connections)
    slow.sendall(head("/v1/messages", FIRST, None) + chunk(first[:30_000]))
    wait_until(lambda: held(capped) == 30_000, "the chunk that arrived to be held")
    other = connect(capped, connections)
    other.sendall(head("/v1/messages", FIRST, None) + chunk(anthropic_body(40_000)[:20_000]))
    wait_until(lambda: held(capped) == 50_000, "both bodies so far to be held")
    other.sendall(chunk(b" " * 20_000))  # would take the two past the cap: refused mid-body
    assert status_of(other) == 429
    assert held(capped) == 30_000
    slow.close()  # gone mid-body
    wait_until(lambda: held(capped) == 0, "a body whose client left to be given back")
    declared = connect(capped, connections)
    declared.sendall(head("/v1/messages", FIRST, 40_000) + first[:500])
    wait_until(lambda: held(capped) == 40_000, "a declared length to be held")
    declared.close()
    wait_until(lambda: held(capped) == 0, "a declared length whose client left to be given back")


@pytest.mark.parametrize(("content", "status"), [
    (b"{nope" + b" " * 2000, 400),
    (anthropic_body(2000, "[[status:529]]"), 529),
    (anthropic_body(2000, "[[delay:0.3]]", stream=True), 200),
])
def test_the_bytes_held_return_to_0_after_answers_and_errors(capped: BackgroundServer, content: bytes,
                                                            status: int) -> None:
    with httpx.stream("POST", capped.url + "/v1/messages", content=content, timeout=30,
                      headers={**ANTHROPIC, "x-api-key": FIRST}) as response:
        assert response.status_code == status
        response.read()
    wait_until(lambda: held(capped) == 0, "the bytes held to return to 0")


def test_a_client_gone_while_its_answer_is_awaited_gives_its_body_back(
        capped: BackgroundServer, connections: list[socket.socket]) -> None:
    body = anthropic_body(20_000, "[[delay:5]]")
    waiting = connect(capped, connections)
    waiting.sendall(head("/v1/messages", FIRST, len(body)) + body)
    wait_until(lambda: held(capped) == len(body), "the body to be held while its answer is awaited")
    time.sleep(0.2)
    assert held(capped) == len(body)
    waiting.close()  # the request's work is cancelled
    started = time.monotonic()
    wait_until(lambda: held(capped) == 0, "the body of a cancelled request to be given back")
    assert time.monotonic() - started < 3, "given back when the request was cancelled, not when the upstream answered"


def test_a_hold_is_given_back_once() -> None:
    metrics = Metrics()
    budget = BodyBudget(max_body_bytes=1000, max_inflight_bytes=1500, metrics=metrics)
    first, second = budget.hold(), budget.hold()
    first.reserve(800, declared=True)
    first.reserve(600)  # within what is held already
    with pytest.raises(BodiesInFlightError) as refused:
        second.reserve(800)
    assert refused.value.retry_after_s == 1.0 and second.bytes == 0 and budget.in_flight == 800
    with pytest.raises(PayloadTooLargeError, match="of 1001 bytes exceeds the limit of 1000 bytes"):
        second.reserve(1001, declared=True)
    second.reserve(700)
    assert budget.in_flight == 1500
    first.release()
    first.release()
    second.release()
    assert budget.in_flight == 0 and first.released and second.released
    with pytest.raises(RuntimeError):
        first.reserve(10)
    assert metrics.value("cascadeflow_body_refusals_total", reason="in_flight") == 1
    assert metrics.value("cascadeflow_body_refusals_total", reason="too_large") == 1
