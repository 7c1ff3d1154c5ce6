"""Anthropic messages and streams as Responses API responses and events, checked with the openai SDK."""

from __future__ import annotations

import copy
from typing import Any

from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from router.protocol.anthropic_stream import message_to_events
from router.protocol.responses_response import (
    AnthropicToResponsesStream,
    anthropic_response_to_responses,
    encode_responses_event,
)
from router.protocol.sse import SSEDecoder
from router.types import JSONObject

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ARGUMENTS = "{\"city\": \"Paris\"}"
TEXT = "Hi! This is the capture server."

REQUEST: JSONObject = {
    "model": "gpt-x", "input": "weather in Paris?", "instructions": "Be brief.", "temperature": 0.5,
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
}

CODEX_REQUEST: JSONObject = {
    "model": "gpt-5-codex", "stream": True, "input": [{"role": "user", "content": "spawn"}],
    "tools": [
        {"type": "function", "name": "exec_command", "description": "Run", "strict": False,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
            {"type": "function", "name": "spawn_agent", "description": "Spawn", "strict": False,
             "parameters": {"type": "object", "properties": {"message": {"type": "string"}}}}]},
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto", "parallel_tool_calls": True, "reasoning": {"summary": "auto"}, "store": False,
}


def _message(content: list[JSONObject], stop_reason: str = "end_turn") -> JSONObject:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": content,
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 20,
                      "output_tokens": 30}}


TEXT_MESSAGE = _message([{"type": "text", "text": TEXT}])
TOOL_MESSAGE = _message([
    {"type": "thinking", "thinking": "Let me think briefly.", "signature": "c2ln"},
    {"type": "text", "text": "I'll use a tool."},
    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
], stop_reason="tool_use")


def _delta(index: int, kind: str, **fields: Any) -> JSONObject:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


def _convert(events: list[JSONObject], request: JSONObject = REQUEST) -> list[JSONObject]:
    converter = AnthropicToResponsesStream("gpt-x", request)
    out: list[JSONObject] = []
    for event in events:
        out += converter.feed(event)
    return out + converter.finish()


def _sdk_run(events: list[JSONObject]) -> list[Any]:
    """Validate every event and run it through the openai SDK's Responses stream state; its emitted events."""
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    state: ResponseStreamState[None] = ResponseStreamState(input_tools=omit, text_format=omit)
    emitted: list[Any] = []
    for event in events:
        emitted += state.handle_event(EVENT_ADAPTER.validate_python(event))
    return emitted


def _without_ids(response: JSONObject) -> JSONObject:
    result = copy.deepcopy(response)
    result.pop("id")
    result.pop("created_at")
    for item in result["output"]:
        item.pop("id")
    return result


def test_non_stream_text_response() -> None:
    response = anthropic_response_to_responses(TEXT_MESSAGE, "gpt-x", REQUEST)
    assert Response.model_validate(response).output_text == TEXT
    assert response["id"].startswith("resp_") and response["object"] == "response"
    assert response["status"] == "completed" and response["incomplete_details"] is None
    assert response["error"] is None and response["output"][0]["id"].startswith("msg_")
    assert response["output"][0]["content"] == [
        {"type": "output_text", "text": TEXT, "annotations": [], "logprobs": []}]
    assert response["usage"] == {
        "input_tokens": 35, "input_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 5},
        "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 65}
    assert response["instructions"] == "Be brief." and response["temperature"] == 0.5
    assert response["top_p"] == 1.0 and response["max_output_tokens"] is None
    assert response["tools"] == REQUEST["tools"] and response["tool_choice"] == "auto"
    assert response["parallel_tool_calls"] is True and response["metadata"] == {}
    assert response["text"] == {"format": {"type": "text"}} and response["model"] == "gpt-x"


def test_non_stream_thinking_and_tool_call() -> None:
    response = anthropic_response_to_responses(TOOL_MESSAGE, "gpt-x", REQUEST)
    Response.model_validate(response)
    reasoning, message, call = response["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me think briefly."}]
    assert message["content"][0]["text"] == "I'll use a tool."
    assert call == {"type": "function_call", "id": call["id"], "call_id": "toolu_01", "name": "get_weather",
                    "arguments": ARGUMENTS, "status": "completed"}
    assert call["id"].startswith("fc_")


def test_non_stream_max_tokens_is_incomplete() -> None:
    message = _message([{"type": "text", "text": "cut"}], "max_tokens")
    response = anthropic_response_to_responses(message, "m", {})
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert Response.model_validate(response).output_text == "cut"


def test_non_stream_namespace_call_and_codex_tools_echo() -> None:
    message = _message([{"type": "tool_use", "id": "toolu_5", "name": "multi_agent_v1__spawn_agent",
                         "input": {"message": "go"}}], "tool_use")
    response = anthropic_response_to_responses(message, "gpt-5-codex", CODEX_REQUEST)
    parsed = Response.model_validate(response)
    call = response["output"][0]
    assert (call["name"], call["namespace"], call["call_id"]) == ("spawn_agent", "multi_agent_v1", "toolu_5")
    assert parsed.output[0].type == "function_call" and parsed.output[0].namespace == "multi_agent_v1"
    assert response["tools"] == CODEX_REQUEST["tools"] and response["store"] is False


def test_stream_text_sequence_and_sdk_acceptance() -> None:
    events = _convert(message_to_events(TEXT_MESSAGE))
    kinds = [event["type"] for event in events]
    deltas = [event for event in events if event["type"] == "response.output_text.delta"]
    head = ["response.created", "response.in_progress", "response.output_item.added",
            "response.content_part.added"]
    tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
            "response.completed"]
    assert kinds == head + ["response.output_text.delta"] * len(deltas) + tail
    assert len(deltas) > 1 and all(d["logprobs"] == [] and d["content_index"] == 0 for d in deltas)
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert events[2]["item"] == {"type": "message", "id": events[2]["item"]["id"], "status": "in_progress",
                                 "role": "assistant", "content": []}
    emitted = _sdk_run(events)
    completed = emitted[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == TEXT
    assert completed.response.usage.input_tokens == 35
    final = events[-1]["response"]
    assert final["id"] == created["id"] and final["output"][0]["id"] == events[2]["item"]["id"]
    expected = anthropic_response_to_responses(TEXT_MESSAGE, "gpt-x", REQUEST)
    assert _without_ids(final) == _without_ids(expected)


def test_stream_tool_call_with_argument_deltas() -> None:
    usage = {"input_tokens": 10, "output_tokens": 1}
    start = {**TOOL_MESSAGE, "content": [], "stop_reason": None, "usage": usage}
    tool = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}
    events: list[JSONObject] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                      "signature": ""}},
        {"type": "ping"},
        _delta(0, "thinking_delta", thinking="Hmm."),
        _delta(0, "signature_delta", signature="s"),
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": tool},
        _delta(1, "input_json_delta", partial_json=""),
        _delta(1, "input_json_delta", partial_json="{\"city\": \"Pa"),
        _delta(1, "input_json_delta", partial_json="ris\"}"),
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 20}},
        {"type": "message_stop"},
    ]
    out = _convert(events)
    assert [event["type"] for event in out] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    added = out[8]["item"]
    assert added["arguments"] == "" and added["status"] == "in_progress" and added["call_id"] == "toolu_01"
    argument_deltas = [e["delta"] for e in out if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(argument_deltas) == ARGUMENTS
    assert out[11]["arguments"] == ARGUMENTS
    emitted = _sdk_run(out)
    snapshots = [e.snapshot for e in emitted if e.type == "response.function_call_arguments.delta"]
    assert snapshots[-1] == ARGUMENTS
    final = emitted[-1].response
    assert [item.type for item in final.output] == ["reasoning", "function_call"]
    assert final.output[1].arguments == ARGUMENTS and final.output[1].call_id == "toolu_01"
    assert final.usage.output_tokens == 20 and final.output_text == ""


def test_stream_reproduces_non_stream_response() -> None:
    out = _convert(message_to_events(TOOL_MESSAGE))
    emitted = _sdk_run(out)
    assert emitted[-1].response.output_text == "I'll use a tool."
    expected = anthropic_response_to_responses(TOOL_MESSAGE, "gpt-x", REQUEST)
    assert _without_ids(out[-1]["response"]) == _without_ids(expected)
    done_ids = [e["item"]["id"] for e in out if e["type"] == "response.output_item.done"]
    assert done_ids == [item["id"] for item in out[-1]["response"]["output"]]


def test_stream_consecutive_text_blocks_share_one_message() -> None:
    message = _message([{"type": "text", "text": "One. "}, {"type": "text", "text": "Two."}])
    out = _convert(message_to_events(message))
    assert sum(e["type"] == "response.output_item.added" for e in out) == 1
    assert [e["content_index"] for e in out if e["type"] == "response.content_part.added"] == [0, 1]
    assert _sdk_run(out)[-1].response.output_text == "One. Two."


def test_stream_max_tokens_ends_incomplete() -> None:
    out = _convert(message_to_events(_message([{"type": "text", "text": "truncated answer"}], "max_tokens")))
    assert out[-1]["type"] == "response.incomplete"
    assert out[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out[-2]["type"] == "response.output_item.done" and out[-2]["item"]["status"] == "incomplete"
    _sdk_run(out)


def test_stream_error_mid_stream() -> None:
    events = message_to_events(TEXT_MESSAGE)[:5] + [
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"type": "message_stop"},
    ]
    converter = AnthropicToResponsesStream("gpt-x", REQUEST)
    out: list[JSONObject] = []
    for event in events:
        out += converter.feed(event)
    assert converter.finish() == []
    assert [e["type"] for e in out[-2:]] == ["error", "response.failed"]
    assert out[-2] == {"type": "error", "code": "overloaded_error", "message": "Overloaded", "param": None,
                       "sequence_number": out[-2]["sequence_number"]}
    failed = out[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "Overloaded"}
    emitted = _sdk_run(out)
    assert emitted[-1].type == "response.failed"
    assert Response.model_validate(failed).error is not None


def test_stream_ending_after_message_delta_completes() -> None:
    events = [e for e in message_to_events(TEXT_MESSAGE) if e["type"] != "message_stop"]
    out = _convert(events)
    assert out[-1]["type"] == "response.completed"
    assert _sdk_run(out)[-1].response.output_text == TEXT


def test_stream_truncated_without_message_stop_fails_and_closes_text() -> None:
    events = [e for e in message_to_events(TOOL_MESSAGE)
              if not (e["type"] == "content_block_stop" and e["index"] == 2)
              and e["type"] not in ("message_delta", "message_stop")]
    out = _convert(events)
    kinds = [e["type"] for e in out]
    assert kinds[-2:] == ["error", "response.failed"]
    assert kinds.count("response.output_item.added") == 3
    done = [e["item"] for e in out if e["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == ["reasoning", "message"]
    assert out[-1]["response"]["output"] == done
    _sdk_run(out)


def test_stream_truncated_inside_text_closes_message_as_incomplete() -> None:
    out = _convert(message_to_events(TEXT_MESSAGE)[:5])
    assert [e["type"] for e in out][-5:] == ["response.output_text.done", "response.content_part.done",
                                             "response.output_item.done", "error", "response.failed"]
    assert out[-3]["item"]["status"] == "incomplete"
    _sdk_run(out)


def test_stream_namespace_call_and_empty_upstream() -> None:
    message = _message([{"type": "tool_use", "id": "toolu_7", "name": "multi_agent_v1__spawn_agent",
                         "input": {"message": "go"}}], "tool_use")
    out = _convert(message_to_events(message), request=CODEX_REQUEST)
    assert out[2]["item"]["namespace"] == "multi_agent_v1" and out[2]["item"]["name"] == "spawn_agent"
    _sdk_run(out)
    empty = _convert([])
    assert [e["type"] for e in empty] == ["response.created", "response.in_progress", "error",
                                          "response.failed"]
    _sdk_run(empty)


def test_encode_responses_event() -> None:
    out = _convert(message_to_events(TEXT_MESSAGE))
    frame = encode_responses_event(out[0])
    assert frame.startswith(b"event: response.created\ndata: {") and frame.endswith(b"}\n\n")
    decoder = SSEDecoder()
    decoded = decoder.feed(b"".join(encode_responses_event(e) for e in out)) + decoder.flush()
    assert [item.event for item in decoded] == [e["type"] for e in out]
