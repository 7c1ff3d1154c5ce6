"""The official openai SDK through the proxy: chat and responses, same dialect and across (Anthropic upstream)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from router.replay.runner import BackgroundServer
from tests.support import item_body, marker, received_with

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
RESPONSES_TOOL: dict[str, Any] = {"type": "function", "name": "get_weather", "description": "Weather.",
                                  "parameters": WEATHER_TOOL["function"]["parameters"]}
CHAT_MODELS = ["gpt-4o-mini", "claude-sonnet-5"]
RESPONSES_MODELS = ["gpt-4o-mini", "claude-sonnet-5", "chatonly-llama"]


@pytest.fixture(scope="module")
def client(proxy: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-client-key", max_retries=0)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_create(client: openai.OpenAI, upstream: BackgroundServer, model: str) -> None:
    tag = marker()
    completion = client.chat.completions.create(
        model=model, max_tokens=64, stop=["STOP"], temperature=0.2,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"hi {tag}"}])
    assert completion.model == model
    assert completion.choices[0].message.content == f"Hello from {model}."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    (seen,) = received_with(upstream, tag)
    if model.startswith("claude"):
        body = item_body(seen)
        assert seen["path"] == "/v1/messages"
        assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
        assert body["stop_sequences"] == ["STOP"] and body["temperature"] == 0.2 and body["max_tokens"] == 64
        assert seen["headers"]["x-api-key"] == "sk-proxy-anthropic", "client key must not cross dialects"
    else:
        assert seen["headers"]["authorization"] == "Bearer sk-client-key"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_stream_helper_with_usage(client: openai.OpenAI, model: str) -> None:
    with client.chat.completions.stream(model=model, max_tokens=64, stream_options={"include_usage": True},
                                        messages=[{"role": "user", "content": marker()}]) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == f"Hello from {model}."
    assert final.model == model
    assert final.usage is not None and final.usage.completion_tokens > 0
    assert final.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("streaming", [False, True])
def test_chat_tool_round_trip(client: openai.OpenAI, upstream: BackgroundServer, model: str,
                              streaming: bool) -> None:
    tag = marker()
    messages: list[Any] = [{"role": "user", "content": f'{tag} [[tools:2]]'}]
    if streaming:
        with client.chat.completions.stream(model=model, max_tokens=256, tools=[WEATHER_TOOL],
                                            messages=messages) as stream:
            first = stream.get_final_completion()
    else:
        first = client.chat.completions.create(model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=messages)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [json.loads(call.function.arguments) for call in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    messages.append(choice.message.model_dump(exclude_none=True, exclude={"parsed"}))
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"sunny {tag}-result"})
    second = client.chat.completions.create(model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=messages)
    assert (second.choices[0].message.content or "").startswith("Tool result received: sunny")
    if model.startswith("claude"):
        body = item_body(received_with(upstream, f"{tag}-result")[-1])
        results = body["messages"][-1]["content"]
        assert [block["tool_use_id"] for block in results] == [call.id for call in calls]


@pytest.mark.parametrize("model", RESPONSES_MODELS)
def test_responses_create(client: openai.OpenAI, upstream: BackgroundServer, model: str) -> None:
    tag = marker()
    response = client.responses.create(model=model, instructions="Be brief.", input=f"hello {tag}",
                                       max_output_tokens=64)
    assert response.output_text == f"Hello from {model}."
    assert response.model == model and response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens > 0
    (seen,) = received_with(upstream, tag)
    expected_path = {"gpt-4o-mini": "/v1/responses", "claude-sonnet-5": "/v1/messages",
                     "chatonly-llama": "/v1/chat/completions"}[model]
    assert seen["path"] == expected_path


@pytest.mark.parametrize("model", RESPONSES_MODELS)
def test_responses_stream_helper(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input=f"stream {marker()}", max_output_tokens=64) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == f"Hello from {model}." == final.output_text
    assert final.usage is not None


@pytest.mark.parametrize("model", RESPONSES_MODELS)
def test_responses_tool_round_trip(client: openai.OpenAI, model: str) -> None:
    tag = marker()
    first = client.responses.create(model=model, tools=[RESPONSES_TOOL],
                                    input=f'{tag} [[tool:get_weather {{"city": "Oslo"}}]]')
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    second = client.responses.create(
        model=model, tools=[RESPONSES_TOOL],
        input=[{"role": "user", "content": tag}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "cold and clear"}])
    assert second.output_text.startswith("Tool result received: cold and clear")


def test_models_list(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "alias-gpt" in ids and "alias-claude" in ids


def test_alias_renamed_in_chat_stream(client: openai.OpenAI, upstream: BackgroundServer) -> None:
    tag = marker()
    chunks = list(client.chat.completions.create(model="alias-gpt", stream=True,
                                                 messages=[{"role": "user", "content": tag}]))
    assert {chunk.model for chunk in chunks} == {"alias-gpt"}
    assert item_body(received_with(upstream, tag)[0])["model"] == "gpt-4o-mini"
