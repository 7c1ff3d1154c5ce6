"""The scripted replay upstream, called directly with the official anthropic and openai SDKs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from router.replay.answers import Answer, Fault, UpstreamRequest
from router.replay.render import logprob_tokens, split_json, split_text
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource, parse_directives
from router.replay.server import create_upstream_app

WEATHER_TOOL: Any = {
    "name": "get_weather", "description": "Weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CHAT_TOOL: Any = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather.",
                 "parameters": WEATHER_TOOL["input_schema"]},
}
RESPONSES_TOOL: Any = {"type": "function", "name": "get_weather", "description": "Weather.",
                                  "parameters": WEATHER_TOOL["input_schema"]}
TOOL_DIRECTIVE = '[[tool:get_weather {"city": "Paris"}]]'


@pytest.fixture(scope="module")
def upstream() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_upstream_app(ScriptedSource())) as server:
        yield server


@pytest.fixture(scope="module")
def claude(upstream: BackgroundServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant", max_retries=0)


@pytest.fixture(scope="module")
def gpt(upstream: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.url + "/v1", api_key="sk-oai", max_retries=0)


def received(upstream: BackgroundServer) -> list[dict[str, Any]]:
    return upstream.app.state.received  # type: ignore[attr-defined,no-any-return]


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# ----------------------------------------------------------------------------------------- Anthropic


def test_messages_create_and_recording(claude: anthropic.Anthropic, upstream: BackgroundServer) -> None:
    message = claude.messages.create(model="claude-x", max_tokens=64, system="Be brief.",
                                     messages=user("hello rec-1"))
    assert message.model == "claude-x" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == "Hello from claude-x."
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message._request_id and message._request_id.startswith("req_")
    seen = next(item for item in received(upstream) if "rec-1" in json.dumps(item["body"]))
    assert seen["method"] == "POST" and seen["path"] == "/v1/messages" and seen["query"] == ""
    assert seen["headers"]["authorization"] == "Bearer sk-ant" and seen["body"]["system"] == "Be brief."
    assert json.loads(seen["raw"]) == seen["body"]


def test_messages_stream_helper_with_tool(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-x", max_tokens=64, tools=[WEATHER_TOOL],
                                messages=user(f"weather? {TOOL_DIRECTIVE}")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "I'll use a tool." and final.stop_reason == "tool_use"
    tool_use = next(block for block in final.content if block.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Paris"}
    assert tool_use.id.startswith("toolu_01")
    assert final.usage.output_tokens > 0


def test_messages_tool_round_trip(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(model="claude-x", max_tokens=64, tools=[WEATHER_TOOL],
                                   messages=user("[[tools:2]]"))
    calls = [block for block in first.content if block.type == "tool_use"]
    assert [call.input for call in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    results = [{"type": "tool_result", "tool_use_id": call.id, "content": f"sunny in {call.input}"}
               for call in calls]
    assistant = {"role": "assistant", "content": [block.model_dump() for block in first.content]}
    history: Any = [*user("[[tools:2]]"), assistant, {"role": "user", "content": results}]
    second = claude.messages.create(model="claude-x", max_tokens=64, tools=[WEATHER_TOOL], messages=history)
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text == "Tool result received: sunny in {'city': 'Paris'}"


def test_messages_thinking(claude: anthropic.Anthropic) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    with claude.messages.stream(model="claude-x", max_tokens=2048, thinking=thinking,
                                messages=user("think [[think]]")) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    thinking = final.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "Let me think." and thinking.signature == "c2lnbmF0dXJl"


def test_count_tokens_and_models(claude: anthropic.Anthropic) -> None:
    count = claude.messages.count_tokens(model="claude-x", messages=user("count me " * 50),
                                         tools=[WEATHER_TOOL])
    assert count.input_tokens > 100
    ids = [model.id for model in claude.models.list()]
    assert "claude-haiku-4-5-20251001" in ids and "gpt-4o-mini" in ids
    assert claude.models.retrieve("claude-x").id == "claude-x"


def test_raw_stream_sequence_with_beta_query(upstream: BackgroundServer) -> None:
    body = {"model": "claude-x", "max_tokens": 5, "stream": True,
            "messages": user("[[think]] [[tool:Read {}]]")}
    response = httpx.post(upstream.url + "/v1/messages?beta=true", json=body,
                          headers={"accept": "application/json", "x-api-key": "k"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    frames = [frame for frame in response.text.split("\n\n") if frame]
    kinds = [frame.split("\n")[0].removeprefix("event: ") for frame in frames]
    assert kinds[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 3
    datas = [json.loads(frame.split("\n")[1].removeprefix("data: ")) for frame in frames]
    assert datas[0]["message"]["content"] == [] and datas[0]["message"]["usage"]["input_tokens"] > 0
    json_pieces = [d["delta"]["partial_json"] for d in datas
                   if d.get("delta", {}).get("type") == "input_json_delta"]
    assert json_pieces[0] == "" and len(json_pieces) >= 3 and "".join(json_pieces) == "{}"
    assert received(upstream)[-1]["query"] == "beta=true"


def test_anthropic_faults(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        claude.messages.create(model="claude-x", max_tokens=5, messages=user("[[status:529]]"))
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert overloaded.value.response.headers["request-id"].startswith("req_")
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="claude-x", max_tokens=5, messages=user("[[status:429 retry:7]]"))
    assert limited.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(("directive", "count"), [("[[break:3]]", 3), ("[[error_event:3]]", 4)])
def test_anthropic_mid_stream_failures(upstream: BackgroundServer, directive: str, count: int) -> None:
    body = {"model": "claude-x", "max_tokens": 5, "stream": True,
            "messages": user(f"one two three {directive}")}
    frames: list[str] = []
    with httpx.stream("POST", upstream.url + "/v1/messages", json=body) as response:
        try:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    frames.append(line.removeprefix("event: "))
        except httpx.RemoteProtocolError:
            frames.append("<dropped>")
    expected = ["message_start", "content_block_start", "ping"]
    assert frames == expected + (["<dropped>"] if "break" in directive else ["error"])
    assert len(expected) + 1 == count + ("break" in directive)


def test_delay_then_answer(claude: anthropic.Anthropic) -> None:
    started = time.monotonic()
    message = claude.messages.create(model="claude-x", max_tokens=5, messages=user("[[delay:0.4]] slow"))
    assert time.monotonic() - started >= 0.4 and message.content[0].type == "text"
    with pytest.raises(anthropic.APITimeoutError):
        claude.with_options(timeout=0.1).messages.create(model="claude-x", max_tokens=5,
                                                         messages=user("[[delay:0.5]]"))


# ----------------------------------------------------------------------------------------- OpenAI chat


def test_chat_create_with_tools(gpt: openai.OpenAI) -> None:
    completion = gpt.chat.completions.create(model="gpt-x", tools=[CHAT_TOOL], messages=user("[[tools:2]]"))
    choice = completion.choices[0]
    assert completion.model == "gpt-x" and choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [json.loads(call.function.arguments) for call in calls  # type: ignore[union-attr]
            ] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert all(call.id.startswith("call_") for call in calls)
    assert completion._request_id and completion.usage and completion.usage.total_tokens > 0
    tool_messages = [{"role": "tool", "tool_call_id": call.id, "content": "rainy [[think]]"}
                     for call in calls]
    history: Any = [*user("[[tools:2]]"), choice.message.model_dump(exclude_none=True), *tool_messages]
    follow = gpt.chat.completions.create(model="gpt-x", tools=[CHAT_TOOL], messages=history)
    assert follow.choices[0].message.content == "Tool result received: rainy"
    assert (follow.choices[0].message.model_extra or {})["reasoning_content"] == "Let me think."
    assert follow.choices[0].finish_reason == "stop"


def test_chat_stream_helper_with_usage(gpt: openai.OpenAI) -> None:
    with gpt.chat.completions.stream(model="gpt-x", tools=[CHAT_TOOL], stream_options={"include_usage": True},
                                     messages=user(f"go {TOOL_DIRECTIVE}")) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == "I'll use a tool." and len(deltas) > 1
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_chat_raw_stream_without_usage(gpt: openai.OpenAI) -> None:
    chunks = list(gpt.chat.completions.create(model="gpt-x", stream=True, messages=user("hi")))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from gpt-x."
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.usage is None for c in chunks)


def test_chat_logprobs_reasoning_and_max_tokens(gpt: openai.OpenAI) -> None:
    prompt = user("[[think]] [[max_tokens]] [[logprobs:-0.1,-0.2,-0.3]]")
    completion = gpt.chat.completions.create(model="gpt-x", logprobs=True, top_logprobs=1, messages=prompt)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert (choice.message.model_extra or {})["reasoning_content"] == "Let me think."
    entries = choice.logprobs.content if choice.logprobs else None
    assert entries and [entry.logprob for entry in entries] == [-0.1, -0.2, -0.3]
    assert "".join(entry.token for entry in entries) == "Hello from gpt-x."
    chunks = list(gpt.chat.completions.create(model="gpt-x", logprobs=True, stream=True, messages=prompt))
    streamed = [lp.logprob for c in chunks if c.choices and c.choices[0].logprobs
                for lp in c.choices[0].logprobs.content or []]
    assert streamed == [-0.1, -0.2, -0.3]
    plain = gpt.chat.completions.create(model="gpt-x", messages=prompt)
    assert plain.choices[0].logprobs is None


def test_chat_faults(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        gpt.chat.completions.create(model="gpt-x", messages=user("[[status:429 retry:7]]"))
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body["type"] == "rate_limit_error"  # type: ignore[index]
    assert limited.value.response.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.InternalServerError) as overloaded:
        gpt.chat.completions.create(model="gpt-x", messages=user("[[status:529]]"))
    assert overloaded.value.status_code == 529
    with pytest.raises(openai.APIError, match="server had an error"):
        list(gpt.chat.completions.create(model="gpt-x", stream=True,
                                         messages=user("a b c [[error_event:2]]")))
    with pytest.raises(openai.APIConnectionError):
        list(gpt.chat.completions.create(model="gpt-x", stream=True, messages=user("a b c [[break:2]]")))


def test_echo(gpt: openai.OpenAI) -> None:
    completion = gpt.chat.completions.create(model="gpt-x", temperature=0.5,
                                             messages=user("see [[echo]] this"))
    echoed = json.loads(completion.choices[0].message.content or "")
    assert echoed["model"] == "gpt-x" and echoed["text"] == "see  this"
    assert sorted(echoed["keys"]) == ["messages", "model", "temperature"]


# ----------------------------------------------------------------------------------------- Responses


def test_responses_create_and_tool_round_trip(gpt: openai.OpenAI) -> None:
    response = gpt.responses.create(model="gpt-x", input="hello", instructions="Be brief.")
    assert response.output_text == "Hello from gpt-x." and response.status == "completed"
    assert response.instructions == "Be brief." and response.usage and response.usage.output_tokens > 0
    first = gpt.responses.create(model="gpt-x", tools=[RESPONSES_TOOL], input=f"weather {TOOL_DIRECTIVE}")
    call = next(item for item in first.output if item.type == "function_call")
    assert json.loads(call.arguments) == {"city": "Paris"} and call.call_id.startswith("call_")
    history: Any = [{"role": "user", "content": "weather"}, call.model_dump(exclude_none=True),
                    {"type": "function_call_output", "call_id": call.call_id, "output": "cold and clear"}]
    second = gpt.responses.create(model="gpt-x", tools=[RESPONSES_TOOL], input=history)
    assert second.output_text == "Tool result received: cold and clear"


def test_responses_stream_helper(gpt: openai.OpenAI) -> None:
    with gpt.responses.stream(model="gpt-x", input=f"[[think]] {TOOL_DIRECTIVE}",
                              tools=[RESPONSES_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert final.output_text == "I'll use a tool." and final.usage is not None
    call = final.output[2]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


def test_responses_error_event(gpt: openai.OpenAI) -> None:
    events = list(gpt.responses.create(model="gpt-x", input="a b c [[error_event:3]]", stream=True))
    assert [event.type for event in events] == ["response.created", "response.in_progress",
                                                "response.output_item.added", "error"]
    assert events[-1].sequence_number == 3


# ----------------------------------------------------------------------------------------- Units and app


def test_parse_directives() -> None:
    found, text = parse_directives('a [[tool:f {"x": [[1]], "y": "]]"}]] b [[status:429 retry:7]] [[nope]] c')
    assert [(d.name, d.value) for d in found] == [("tool", "f"), ("status", "429")]
    assert found[0].arguments == {"x": [[1]], "y": "]]"} and found[1].option("retry") == "7"
    assert text == "a  b  [[nope]] c"
    assert split_text(" Hello from  x. ") == [" Hello ", "from  ", "x. "]
    assert split_json('{"a": 1}') == ['{"a"', ": 1}"]
    assert logprob_tokens("a b c d e", 2) == ["a b c ", "d e"] and logprob_tokens("a", 2) == ["a", ""]


def test_model_scoped_directives(claude: anthropic.Anthropic) -> None:
    prompt = f"[[weak:claude-a]] [[badtool:claude-a]] [[fail:claude-b status:529]] {TOOL_DIRECTIVE}"
    weak = claude.messages.create(model="claude-a", max_tokens=5, messages=user(prompt))
    assert weak.content[0].type == "text" and weak.content[0].text.startswith("I'm sorry, but")
    tool_use = next(block for block in weak.content if block.type == "tool_use")
    assert tool_use.input == {"unexpected_argument": True}
    with pytest.raises(anthropic.InternalServerError) as failed:
        claude.messages.create(model="claude-b", max_tokens=5, messages=user(prompt))
    assert failed.value.status_code == 529
    other = claude.messages.create(model="claude-c", max_tokens=5, messages=user(prompt))
    assert other.content[0].type == "text" and other.content[0].text == "I'll use a tool."
    assert next(block for block in other.content if block.type == "tool_use").input == {"city": "Paris"}


class FixedSource:
    async def answer(self, request: UpstreamRequest) -> Answer | Fault:
        return Fault(break_stream_after=1) if request.body.get("stream") else Answer(text=request.dialect)


def test_custom_source_latency_pacing_and_unknown_paths() -> None:
    with BackgroundServer(create_upstream_app(FixedSource(), latency_s=0.2, stream_delay_s=0.05)) as server:
        started = time.monotonic()
        reply = httpx.post(server.url + "/v1/responses", json={"model": "m", "input": "x"})
        assert time.monotonic() - started >= 0.2
        assert reply.json()["output"][0]["content"][0]["text"] == "openai_responses"
        bad = httpx.post(server.url + "/v1/chat/completions", content=b"[1,")
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        missing = httpx.head(server.url + "/")
        assert missing.status_code == 404
        assert httpx.get(server.url + "/v1/nothing").json()["error"]["type"] == "not_found_error"
    assert not server.running
