"""The official anthropic SDK through the proxy: same dialect (raw forwarding) and across (OpenAI upstream)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from router.replay.runner import BackgroundServer
from tests.support import item_body, marker, received_with

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def client(proxy: BackgroundServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-client-key", max_retries=0)


@pytest.mark.parametrize("model", ["claude-sonnet-5", "gpt-4o-mini"])
def test_create(client: anthropic.Anthropic, upstream: BackgroundServer, model: str) -> None:
    tag = marker()
    message = client.messages.create(model=model, max_tokens=64, system="Be brief.",
                                     messages=[{"role": "user", "content": f"hello {tag}"}])
    assert message.model == model
    assert message.content[0].type == "text" and message.content[0].text == f"Hello from {model}."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    (seen,) = received_with(upstream, tag)
    if model.startswith("gpt"):
        assert seen["path"] == "/v1/chat/completions"
        body = item_body(seen)
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert seen["headers"]["authorization"] == "Bearer sk-proxy-openai", "client key must not cross dialects"
    else:
        assert seen["path"] == "/v1/messages"
        assert seen["headers"]["authorization"] == "Bearer sk-client-key", "pass-through forwards the client key"


@pytest.mark.parametrize("model", ["claude-sonnet-5", "gpt-4o-mini"])
def test_stream_helper(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(model=model, max_tokens=64,
                                messages=[{"role": "user", "content": f"stream please {marker()}"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"Hello from {model}."
    assert final.model == model and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-sonnet-5", "gpt-4o-mini"])
@pytest.mark.parametrize("streaming", [False, True])
def test_tool_round_trip(client: anthropic.Anthropic, upstream: BackgroundServer, model: str,
                         streaming: bool) -> None:
    tag = marker()
    prompt = f'weather? {tag} [[tool:get_weather {{"city": "Paris"}}]]'
    messages: list[Any] = [{"role": "user", "content": prompt}]
    if streaming:
        with client.messages.stream(model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=messages) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=messages)
    assert first.stop_reason == "tool_use"
    tool_use = next(block for block in first.content if block.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id,
                                      "content": f"sunny {tag}-result", "is_error": False}]},
    ]
    second = client.messages.create(model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=messages)
    assert second.content[0].type == "text"
    assert second.content[0].text.startswith("Tool result received: sunny")
    follow_up = received_with(upstream, f"{tag}-result")[-1]
    body = item_body(follow_up)
    if model.startswith("gpt"):
        tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
        assert tool_messages[0]["tool_call_id"] == tool_use.id
        assert f"{tag}-result" in str(tool_messages[0]["content"])
        assert body["tools"][0]["function"]["name"] == "get_weather"
    else:
        assert body["messages"][-1]["content"][0]["type"] == "tool_result"


def test_same_dialect_forwards_body_headers_and_query_verbatim(proxy: BackgroundServer,
                                                                upstream: BackgroundServer) -> None:
    tag = marker()
    raw = (
        '{"model":"claude-opus-4-8","max_tokens":64000,"messages":[{"role":"user","content":[{"type":"text",'
        '"text":"' + tag + '","cache_control":{"type":"ephemeral"}}]},{"role":"system","content":"skills"}],'
        '"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=1"},{"type":"text","text":"S",'
        '"cache_control":{"type":"ephemeral"}}],"tools":[{"name":"Read","description":"d","input_schema":'
        '{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","propertyNames":{"pattern":'
        '"^[a-z_]+$"},"properties":{"n":{"type":"number","exclusiveMinimum":0}}}}],"metadata":{"user_id":'
        '"{\\"device_id\\":\\"d\\",\\"session_id\\":\\"s\\"}"},"thinking":{"type":"adaptive"},'
        '"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},'
        '"output_config":{"effort":"high"},"future_field":{"nested":[1,2.50,null]},"stream":false}'
    )
    betas = "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    response = httpx.post(
        f"{proxy.url}/v1/messages?beta=true", content=raw,
        headers={"x-api-key": "sk-cc", "anthropic-version": "2023-06-01", "anthropic-beta": betas,
                 "content-type": "application/json", "x-claude-code-session-id": "sess-1"},
    )
    assert response.status_code == 200, response.text
    (seen,) = received_with(upstream, tag)
    assert seen["raw"] == raw.encode(), "the same-dialect body must reach the upstream byte for byte"
    assert seen["query"] == "beta=true"
    assert seen["headers"]["anthropic-beta"] == betas
    assert seen["headers"]["x-claude-code-session-id"] == "sess-1"
    assert seen["headers"]["x-api-key"] == "sk-cc"


def test_alias_is_renamed_upstream_and_back(client: anthropic.Anthropic, upstream: BackgroundServer) -> None:
    tag = marker()
    message = client.messages.create(model="alias-claude", max_tokens=32,
                                     messages=[{"role": "user", "content": tag}])
    assert message.model == "alias-claude"
    assert item_body(received_with(upstream, tag)[0])["model"] == "claude-haiku-4-5"
    with client.messages.stream(model="alias-claude", max_tokens=32,
                                messages=[{"role": "user", "content": marker()}]) as stream:
        assert stream.get_final_message().model == "alias-claude"


def test_thinking_blocks_survive_both_ways(client: anthropic.Anthropic, upstream: BackgroundServer) -> None:
    with client.messages.stream(model="claude-sonnet-5", max_tokens=2048,
                                thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "think [[think]]"}]) as stream:
        first = stream.get_final_message()
    thinking = next(block for block in first.content if block.type == "thinking")
    assert thinking.thinking and thinking.signature
    tag = marker()
    client.messages.create(
        model="claude-sonnet-5", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think [[think]]"},
                  {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
                  {"role": "user", "content": tag}])
    history = item_body(received_with(upstream, tag)[0])["messages"][1]["content"]
    assert history[0] == {"type": "thinking", "thinking": thinking.thinking, "signature": thinking.signature}


@pytest.mark.parametrize("model", ["claude-sonnet-5", "gpt-4o-mini"])
def test_count_tokens(client: anthropic.Anthropic, model: str) -> None:
    count = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "count me " * 50}],
                                         tools=[WEATHER_TOOL])
    assert count.input_tokens > 50


def test_models_list(client: anthropic.Anthropic) -> None:
    ids = [model.id for model in client.models.list()]
    assert "alias-claude" in ids and "alias-gpt" in ids
    assert client.models.retrieve("alias-claude").id == "alias-claude"


def test_system_messages_inside_messages_cross_dialect(proxy: BackgroundServer, upstream: BackgroundServer) -> None:
    tag = marker()
    body = {"model": "gpt-4o-mini", "max_tokens": 64, "system": [{"type": "text", "text": "Top system."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": tag}]},
                         {"role": "system", "content": "Skills list."}]}
    response = httpx.post(f"{proxy.url}/v1/messages?beta=true", json=body,
                          headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    sent = item_body(received_with(upstream, tag)[0])["messages"]
    contents = [m["content"] for m in sent if m["role"] == "system"]
    assert any("Top system." in str(c) for c in contents) and any("Skills list." in str(c) for c in contents)
