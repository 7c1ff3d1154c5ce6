"""A streamed cascade request whose draft is slow: its stream begins with keep-alive comments, then the answer."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from router.replay.runner import BackgroundServer
from tests.stalling import ASK, DRAFT, STRONG, Stalls, stalling_upstream, wait_for
from tests.support import ProxyFactory, item_body, marker, proxy_settings, received_with

RULES = [
    {"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
     "quality_threshold": 0.6},
    {"request_model": "gpt-4o", "draft_model": "gpt-4o-mini", "verifier_model": "gpt-4o", "quality_threshold": 0.6},
]
KEEPALIVE_S = 0.25
ANTHROPIC = {"anthropic-version": "2023-06-01", "x-api-key": "k"}


@pytest.fixture(scope="module")
def proxy(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> BackgroundServer:
    return proxy_factory(proxy_settings(upstream.url, cascade_rules=RULES,
                                        server={"stream_keepalive_s": KEEPALIVE_S}))


def stream_raw(proxy: BackgroundServer, text: str, model: str = "claude-opus-4-8") -> httpx.Response:
    body = {"model": model, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": text}]}
    return httpx.post(proxy.url + "/v1/messages", json=body, headers=ANTHROPIC, timeout=30)


def test_a_slow_draft_gets_keepalive_comments_then_the_answer(proxy: BackgroundServer,
                                                               upstream: BackgroundServer) -> None:
    tag = marker()
    reply = stream_raw(proxy, f"What is 2+2? {tag} [[delay:1.0]]")
    assert reply.status_code == 200
    assert reply.headers["x-cascadeflow-keepalive"] == "true"
    assert reply.headers["content-type"].startswith("text/event-stream")
    lines = reply.text.splitlines()
    comments = [line for line in lines if line.startswith(":")]
    assert len(comments) >= 3, f"a comment at once and one every {KEEPALIVE_S} s while the 1 s draft ran"
    first_event = next(i for i, line in enumerate(lines) if line.startswith("event:"))
    assert all(line.startswith(":") or not line for line in lines[:first_event]), "comments only before the answer"
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == "Hello from claude-haiku-4-5."
    called = [item_body(item)["model"] for item in received_with(upstream, tag)]
    assert called == ["claude-haiku-4-5"], "the draft was served"


def test_the_anthropic_sdk_reads_a_kept_alive_stream(proxy: BackgroundServer) -> None:
    client = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    with client.messages.stream(model="claude-opus-4-8", max_tokens=64,
                                messages=[{"role": "user", "content": f"Hi {marker()} [[delay:0.7]]"}]) as stream:
        text = "".join(stream.text_stream)
        assert stream.response.headers["x-cascadeflow-keepalive"] == "true"
    assert text == "Hello from claude-haiku-4-5."


def test_the_openai_sdk_reads_a_kept_alive_stream(proxy: BackgroundServer) -> None:
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": f"Hi {marker()} [[delay:0.7]]"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from gpt-4o-mini."


def test_a_failure_after_the_stream_began_is_an_error_event(proxy: BackgroundServer,
                                                            upstream: BackgroundServer) -> None:
    tag = marker()
    reply = stream_raw(proxy, f"Hi {tag} [[weak:claude-haiku-4-5]] [[fail:claude-opus-4-8 status:529]] "
                              "[[delay:0.6]]")
    assert reply.status_code == 200, "the status was sent before the failure"
    events = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: ")]
    assert len(events) == 1 and events[0]["type"] == "error", reply.text
    assert events[0]["error"]["type"] == "overloaded_error"
    called = [item_body(item)["model"] for item in received_with(upstream, tag)]
    assert called == ["claude-haiku-4-5", "claude-opus-4-8"]
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": (
                f"Hi {marker()} [[weak:gpt-4o-mini]] [[fail:gpt-4o status:529]] [[delay:0.6]]")}]))


def test_a_fast_answer_keeps_its_headers_and_status(proxy: BackgroundServer) -> None:
    reply = stream_raw(proxy, f"Hi {marker()}")
    assert reply.status_code == 200
    assert "x-cascadeflow-keepalive" not in reply.headers
    assert reply.headers["x-cascadeflow-draft-accepted"] == "true", "the route's headers when nothing was late"
    refused = stream_raw(proxy, f"Hi {marker()} [[weak:claude-haiku-4-5]] [[fail:claude-opus-4-8 status:529]]")
    assert refused.status_code == 529, "an error before the keep-alive began keeps its status"


def test_a_client_that_leaves_during_the_keepalive_cancels_the_work(proxy_factory: ProxyFactory) -> None:
    stalls = Stalls()
    with BackgroundServer(stalling_upstream(stalls)) as server:
        proxy = proxy_factory(proxy_settings(server.url, server={"stream_keepalive_s": KEEPALIVE_S}, cascade_rules=[
            {"request_model": STRONG, "draft_model": DRAFT, "verifier_model": STRONG}]))
        body = {"model": STRONG, "max_tokens": 64, "stream": True,
                "messages": [{"role": "user", "content": "Hello?"}]}
        with httpx.stream("POST", proxy.url + "/v1/messages", json=body, headers=ASK, timeout=30) as reply:
            assert reply.headers["x-cascadeflow-keepalive"] == "true"
            assert next(reply.iter_lines()).startswith(":")
        left = time.monotonic()
        wait_for(lambda: len(stalls.cancelled) == 1)  # the draft's connection was closed
        assert time.monotonic() - left < 5.0
        assert stalls.models == [DRAFT], "the strong model is never asked"
