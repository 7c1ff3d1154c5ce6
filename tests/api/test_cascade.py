"""The cascade through the proxy: each decision path, streaming or not, both dialects, tool turns included."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from router.replay.runner import BackgroundServer
from tests.support import ProxyFactory, item_body, marker, proxy_settings, received_with

RULES = [
    {"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
     "quality_threshold": 0.6},
    {"request_model": "gpt-4o", "draft_model": "gpt-4o-mini", "verifier_model": "gpt-4o", "quality_threshold": 0.6},
    {"name": "mixed", "draft_model": "gpt-4o-mini", "verifier_model": "claude-sonnet-5", "quality_threshold": 0.6},
]
READ_TOOL: dict[str, Any] = {
    "name": "Read", "description": "Read a file.",
    "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                     "properties": {"file_path": {"type": "string"}}, "required": ["file_path"],
                     "additionalProperties": False},
}


@pytest.fixture(scope="module")
def cascade_proxy(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> BackgroundServer:
    return proxy_factory(proxy_settings(upstream.url, cascade_rules=RULES))


@pytest.fixture(scope="module")
def claude(cascade_proxy: BackgroundServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=cascade_proxy.url, api_key="k", max_retries=0)


@pytest.fixture(scope="module")
def gpt(cascade_proxy: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=cascade_proxy.url + "/v1", api_key="k", max_retries=0)


def models_called(upstream: BackgroundServer, tag: str) -> list[str]:
    return [item_body(item)["model"] for item in received_with(upstream, tag)]


@pytest.mark.parametrize("streaming", [False, True])
def test_confident_draft_is_accepted(claude: anthropic.Anthropic, upstream: BackgroundServer,
                                     streaming: bool) -> None:
    tag = marker()
    kwargs: dict[str, Any] = {"model": "claude-opus-4-8", "max_tokens": 64000 if streaming else 16000,
                              "thinking": {"type": "adaptive"},
                              "messages": [{"role": "user", "content": f"What is 2+2? {tag}"}]}
    if streaming:
        with claude.messages.stream(**kwargs) as stream:
            text = "".join(stream.text_stream)
            message = stream.get_final_message()
            headers = stream.response.headers
    else:
        raw = claude.messages.with_raw_response.create(**kwargs)
        message, headers = raw.parse(), raw.headers
        text = message.content[0].text  # type: ignore[union-attr]
    assert text == "Hello from claude-haiku-4-5."
    assert message.model == "claude-opus-4-8", "the body shows the requested model"
    assert headers["x-cascadeflow-draft-accepted"] == "true"
    assert float(headers["x-cascadeflow-confidence"]) >= 0.6
    assert float(headers["x-cascadeflow-cost-saved"]) > 0
    assert float(headers["x-cascadeflow-actual-cost"]) < float(headers["x-cascadeflow-original-cost"])
    assert models_called(upstream, tag) == ["claude-haiku-4-5"]
    draft_body = item_body(received_with(upstream, tag)[0])
    assert "thinking" not in draft_body and draft_body["max_tokens"] <= 64000


@pytest.mark.parametrize("streaming", [False, True])
def test_weak_draft_is_escalated_and_never_shown(claude: anthropic.Anthropic, upstream: BackgroundServer,
                                                 streaming: bool) -> None:
    tag = marker()
    kwargs: dict[str, Any] = {"model": "claude-opus-4-8", "max_tokens": 256,
                              "messages": [{"role": "user", "content": f"{tag} [[weak:claude-haiku-4-5]]"}]}
    if streaming:
        with claude.messages.with_streaming_response.create(**kwargs, stream=True) as response:
            raw = response.read().decode()
            headers = response.headers
        assert "haiku" not in raw and "sorry" not in raw.lower()
        assert raw.count("event: message_start") == 1
        assert "Hello from claude-opus-4-8." in "".join(
            json.loads(line[6:])["delta"].get("text", "") for line in raw.splitlines()
            if line.startswith("data: ") and '"content_block_delta"' in line)
    else:
        raw_response = claude.messages.with_raw_response.create(**kwargs)
        headers = raw_response.headers
        assert raw_response.parse().content[0].text == "Hello from claude-opus-4-8."  # type: ignore[union-attr]
    assert headers["x-cascadeflow-draft-accepted"] == "false"
    assert float(headers["x-cascadeflow-draft-cost-wasted"]) > 0
    assert models_called(upstream, tag) == ["claude-haiku-4-5", "claude-opus-4-8"]


@pytest.mark.parametrize("streaming", [False, True])
def test_tool_turns(claude: anthropic.Anthropic, upstream: BackgroundServer, streaming: bool) -> None:
    good, bad = marker(), marker()
    for tag, directive, expected_models in (
        (good, "", ["claude-haiku-4-5"]),
        (bad, "[[badtool:claude-haiku-4-5]]", ["claude-haiku-4-5", "claude-opus-4-8"]),
    ):
        content = f'{tag} {directive} [[tool:Read {{"file_path": "/tmp/a.txt"}}]]'
        kwargs: dict[str, Any] = {"model": "claude-opus-4-8", "max_tokens": 256, "tools": [READ_TOOL],
                                  "messages": [{"role": "user", "content": content}]}
        if streaming:
            with claude.messages.stream(**kwargs) as stream:
                message = stream.get_final_message()
        else:
            message = claude.messages.create(**kwargs)
        tool_use = next(block for block in message.content if block.type == "tool_use")
        assert tool_use.input == {"file_path": "/tmp/a.txt"}, "the client only ever sees a valid tool call"
        assert models_called(upstream, tag) == expected_models


def test_draft_failure_escalates(claude: anthropic.Anthropic, upstream: BackgroundServer) -> None:
    tag = marker()
    message = claude.messages.create(model="claude-opus-4-8", max_tokens=64,
                                     messages=[{"role": "user", "content": f"{tag} [[fail:claude-haiku-4-5]]"}])
    assert message.content[0].text == "Hello from claude-opus-4-8."  # type: ignore[union-attr]
    assert models_called(upstream, tag) == ["claude-haiku-4-5", "claude-opus-4-8"]


def test_control_headers(claude: anthropic.Anthropic, upstream: BackgroundServer) -> None:
    strong_tag, draft_tag = marker(), marker()
    raw = claude.messages.with_raw_response.create(
        model="claude-opus-4-8", max_tokens=64, messages=[{"role": "user", "content": strong_tag}],
        extra_headers={"x-cascadeflow-force": "strong"})
    assert raw.headers["x-cascadeflow-draft-accepted"] == "skipped"
    assert models_called(upstream, strong_tag) == ["claude-opus-4-8"]
    assert "x-cascadeflow-force" not in received_with(upstream, strong_tag)[0]["headers"]
    forced = claude.messages.with_raw_response.create(
        model="claude-opus-4-8", max_tokens=64,
        messages=[{"role": "user", "content": f"{draft_tag} [[weak:claude-haiku-4-5]]"}],
        extra_headers={"x-cascadeflow-force": "draft"})
    assert forced.headers["x-cascadeflow-draft-accepted"] == "true"
    assert models_called(upstream, draft_tag) == ["claude-haiku-4-5"]


def test_claude_code_background_request_skips_the_draft(cascade_proxy: BackgroundServer,
                                                        upstream: BackgroundServer) -> None:
    tag = marker()
    body = {"model": "claude-opus-4-8", "max_tokens": 32000, "tools": [], "stream": True,
            "system": [{"type": "text", "text": "Generate a title as JSON."}],
            "messages": [{"role": "user", "content": tag}],
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}
    response = httpx.post(f"{cascade_proxy.url}/v1/messages?beta=true", json=body,
                          headers={"x-api-key": "k", "anthropic-version": "2023-06-01",
                                   "user-agent": "claude-cli/2.1.197 (external, sdk-cli)"})
    assert response.status_code == 200
    assert models_called(upstream, tag) == ["claude-opus-4-8"]


def test_context_too_long_for_draft_goes_straight_to_strong(claude: anthropic.Anthropic,
                                                            upstream: BackgroundServer) -> None:
    tag = marker()
    huge = "lorem ipsum " * 80_000
    claude.messages.create(model="claude-opus-4-8", max_tokens=64,
                           messages=[{"role": "user", "content": f"{tag} {huge}"}])
    assert models_called(upstream, tag) == ["claude-opus-4-8"]


def test_draft_request_adapted_for_the_draft_model(cascade_proxy: BackgroundServer,
                                                   upstream: BackgroundServer) -> None:
    tag = marker()
    body = {"model": "claude-opus-4-8", "max_tokens": 64000, "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "messages": [{"role": "user", "content": "q"},
                         {"role": "assistant", "content": [
                             {"type": "thinking", "thinking": "t", "signature": "opus-signature"},
                             {"type": "text", "text": "a"}]},
                         {"role": "user", "content": tag}]}
    betas = "claude-code-20250219,context-1m-2025-08-07,effort-2025-11-24,interleaved-thinking-2025-05-14"
    response = httpx.post(f"{cascade_proxy.url}/v1/messages?beta=true", json=body,
                          headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "anthropic-beta": betas})
    assert response.status_code == 200
    draft = received_with(upstream, tag)[0]
    sent = item_body(draft)
    assert sent["model"] == "claude-haiku-4-5"
    assert "thinking" not in sent and "output_config" not in sent
    assert all(block["type"] != "thinking" for block in sent["messages"][1]["content"])
    assert draft["headers"]["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("weak", [False, True])
def test_openai_chat_client(gpt: openai.OpenAI, upstream: BackgroundServer, streaming: bool, weak: bool) -> None:
    tag = marker()
    content = f"{tag} [[weak:gpt-4o-mini]]" if weak else tag
    messages: Any = [{"role": "user", "content": content}]
    if streaming:
        with gpt.chat.completions.stream(model="gpt-4o", messages=messages,
                                         stream_options={"include_usage": True}) as stream:
            completion = stream.get_final_completion()
    else:
        completion = gpt.chat.completions.create(model="gpt-4o", messages=messages)
    expected = "gpt-4o" if weak else "gpt-4o-mini"
    assert completion.choices[0].message.content == f"Hello from {expected}."
    assert completion.model == "gpt-4o"
    assert models_called(upstream, tag) == (["gpt-4o-mini", "gpt-4o"] if weak else ["gpt-4o-mini"])


@pytest.mark.parametrize("weak", [False, True])
def test_cross_provider_cascade_for_responses_client(gpt: openai.OpenAI, upstream: BackgroundServer,
                                                     weak: bool) -> None:
    tag = marker()
    with gpt.responses.stream(model="cascade/mixed",
                              input=f"{tag} [[weak:gpt-4o-mini]]" if weak else tag) as stream:
        final = stream.get_final_response()
    assert final.output_text == ("Hello from claude-sonnet-5." if weak else "Hello from gpt-4o-mini.")
    assert final.model == "cascade/mixed"
    paths = [item["path"] for item in received_with(upstream, tag)]
    assert paths == (["/v1/chat/completions", "/v1/messages"] if weak else ["/v1/chat/completions"])


def test_metrics_count_routes_and_drafts(cascade_proxy: BackgroundServer, claude: anthropic.Anthropic) -> None:
    claude.messages.create(model="claude-opus-4-8", max_tokens=16, messages=[{"role": "user", "content": marker()}])
    text = httpx.get(cascade_proxy.url + "/metrics").text
    assert 'cascadeflow_drafts_total{outcome="accepted"}' in text
    assert 'cascadeflow_requests_total{dialect="anthropic",endpoint="messages",route="draft",status="200"}' in text
    assert "cascadeflow_cost_usd_total" in text
