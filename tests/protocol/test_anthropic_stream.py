"""Anthropic stream accumulation, event synthesis (checked with the anthropic SDK's accumulator), encoding."""

from __future__ import annotations

import copy
import json
from typing import Any

from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from router.protocol.anthropic_stream import AnthropicStreamAccumulator, encode_event, message_to_events
from router.protocol.sse import SSEDecoder
from router.types import JSONObject

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def _message_start(usage: JSONObject | None = None) -> JSONObject:
    message: JSONObject = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
                           "content": [], "stop_reason": None, "stop_sequence": None,
                           "usage": usage or {"input_tokens": 1, "output_tokens": 0}}
    return {"type": "message_start", "message": message}


def _start(index: int, block: JSONObject) -> JSONObject:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, kind: str, **fields: Any) -> JSONObject:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


def _stop(index: int) -> JSONObject:
    return {"type": "content_block_stop", "index": index}


START_USAGE: JSONObject = {"input_tokens": 58, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                           "output_tokens": 1, "service_tier": "standard"}
THINKING_TOOL_STREAM: list[JSONObject] = [
    _message_start(START_USAGE),
    _start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    {"type": "ping"},
    _delta(0, "thinking_delta", thinking="Let me "),
    _delta(0, "thinking_delta", thinking="think."),
    _delta(0, "signature_delta", signature="c2ln"),
    _stop(0),
    _start(1, {"type": "text", "text": ""}),
    _delta(1, "text_delta", text="I'll use "),
    _delta(1, "text_delta", text="a tool."),
    _stop(1),
    _start(2, {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}),
    _delta(2, "input_json_delta", partial_json=""),
    _delta(2, "input_json_delta", partial_json="{\"city\": \"Pa"),
    _delta(2, "input_json_delta", partial_json="ris\"}"),
    _stop(2),
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"input_tokens": 60, "output_tokens": 42}},
    {"type": "message_stop"},
]

CITATION: JSONObject = {"type": "web_search_result_location", "url": "https://example.com",
                        "title": "Example", "encrypted_index": "abc", "cited_text": "claim"}
RICH_MESSAGE: JSONObject = {
    "id": "msg_rich", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [
        {"type": "thinking", "thinking": "First I consider the question, then answer.", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "opaque-data"},
        {"type": "text", "text": "Hello there, this is a longer answer\nwith  two lines and some   spaces. "},
        {"type": "text", "text": "Cited claim.", "citations": [CITATION]},
        {"type": "tool_use", "id": "toolu_9", "name": "search", "input": {"q": "ünï", "n": [1, {"x": None}]}},
        {"type": "tool_use", "id": "toolu_10", "name": "noop", "input": {}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 100,
              "output_tokens": 77, "service_tier": "standard"},
}


def _sdk_accumulate(events: list[JSONObject]) -> Any:
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for event in events:
        if event["type"] == "ping":
            continue
        parsed = EVENT_ADAPTER.validate_python(event)
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot


def _accumulate(events: list[JSONObject]) -> AnthropicStreamAccumulator:
    accumulator = AnthropicStreamAccumulator()
    for event in events:
        accumulator.feed(event)
    return accumulator


def test_accumulator_builds_thinking_text_and_tool_use() -> None:
    accumulator = _accumulate(THINKING_TOOL_STREAM)
    message = accumulator.message()
    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"},
        {"type": "text", "text": "I'll use a tool."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["stop_sequence"] is None
    assert message["usage"] == {**START_USAGE, "input_tokens": 60, "output_tokens": 42}
    assert message["id"] == "msg_01" and message["model"] == "claude-x"
    assert accumulator.error is None and accumulator.stopped and accumulator.stop_reason == "tool_use"


def test_accumulator_tool_input_edge_cases() -> None:
    events: list[JSONObject] = [
        _message_start(),
        _start(0, {"type": "tool_use", "id": "a", "name": "t", "input": {}}),
        _delta(0, "input_json_delta", partial_json=""),
        _stop(0),
        _start(1, {"type": "tool_use", "id": "b", "name": "t", "input": {"given": True}}),
        _stop(1),
        _start(2, {"type": "tool_use", "id": "c", "name": "t", "input": {}}),
        _delta(2, "input_json_delta", partial_json="{\"cut"),
    ]
    content = _accumulate(events).message()["content"]
    assert [block["input"] for block in content] == [{}, {"given": True}, {}]


def test_accumulator_keeps_citations_unknown_blocks_and_deltas() -> None:
    citation = {"type": "char_location", "cited_text": "x", "document_index": 0, "start_char_index": 0,
                "end_char_index": 1}
    events: list[JSONObject] = [
        _message_start(),
        _start(0, {"type": "text", "text": ""}),
        _delta(0, "citations_delta", citation=citation),
        _delta(0, "text_delta", text="x"),
        _stop(0),
        _start(1, {"type": "web_search_tool_result", "tool_use_id": "srv", "content": []}),
        _stop(1),
        _start(2, {"type": "future_block", "notes": "a"}),
        _delta(2, "notes_delta", notes="b"),
        _stop(2),
        _start(3, {"type": "redacted_thinking", "data": "zz"}),
        _stop(3),
    ]
    content = _accumulate(events).message()["content"]
    assert content[0] == {"type": "text", "text": "x", "citations": [citation]}
    assert content[1] == {"type": "web_search_tool_result", "tool_use_id": "srv", "content": []}
    assert content[2] == {"type": "future_block", "notes": "ab"}
    assert content[3] == {"type": "redacted_thinking", "data": "zz"}


def test_accumulator_records_error_event() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    accumulator = _accumulate(THINKING_TOOL_STREAM[:9] + [error])
    assert accumulator.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert not accumulator.stopped
    assert accumulator.message()["content"][1] == {"type": "text", "text": "I'll use "}


def test_message_to_events_sequence_shape() -> None:
    events = message_to_events(RICH_MESSAGE)
    kinds = [event["type"] for event in events]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["stop_sequence"] is None
    assert start["usage"]["output_tokens"] == 1 and start["usage"]["input_tokens"] == 12
    assert start["usage"]["cache_read_input_tokens"] == 100
    block_starts = [event["content_block"] for event in events if event["type"] == "content_block_start"]
    assert block_starts[0] == {"type": "thinking", "thinking": "", "signature": ""}
    assert block_starts[1] == {"type": "redacted_thinking", "data": "opaque-data"}
    assert block_starts[2] == {"type": "text", "text": ""}
    assert block_starts[4] == {"type": "tool_use", "id": "toolu_9", "name": "search", "input": {}}
    text_deltas = [e for e in events if e["type"] == "content_block_delta" and e["index"] == 2]
    assert len(text_deltas) > 1
    assert "".join(e["delta"]["text"] for e in text_deltas) == RICH_MESSAGE["content"][2]["text"]
    usage = {"output_tokens": 77, "input_tokens": 12, "cache_creation_input_tokens": 3,
             "cache_read_input_tokens": 100}
    delta = {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2] == {"type": "message_delta", "delta": delta, "usage": usage}
    for event in events:
        if event["type"] != "ping":
            EVENT_ADAPTER.validate_python(event)


def test_message_to_events_accepted_by_sdk_accumulator() -> None:
    for message in (RICH_MESSAGE, _accumulate(THINKING_TOOL_STREAM).message()):
        snapshot = _sdk_accumulate(message_to_events(message))
        expected = Message.model_validate(message).to_dict(exclude_none=True)
        assert snapshot.to_dict(exclude_none=True) == expected


def test_message_to_events_round_trips_through_accumulator() -> None:
    original = copy.deepcopy(RICH_MESSAGE)
    assert _accumulate(message_to_events(RICH_MESSAGE)).message() == original
    assert RICH_MESSAGE == original


def test_message_to_events_without_content() -> None:
    message: JSONObject = {"id": "m", "type": "message", "role": "assistant", "model": "x", "content": [],
                           "stop_reason": "end_turn", "stop_sequence": None,
                           "usage": {"input_tokens": 3, "output_tokens": 0}}
    events = message_to_events(message)
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[0]["message"]["usage"]["output_tokens"] == 0
    expected = Message.model_validate(message).to_dict(exclude_none=True)
    assert _sdk_accumulate(events).to_dict(exclude_none=True) == expected


def test_encode_event_frames_decode_back() -> None:
    events = message_to_events(RICH_MESSAGE)
    frame = encode_event(events[0])
    assert frame.startswith(b"event: message_start\ndata: {") and frame.endswith(b"}\n\n")
    assert b"\": " not in frame and b", \"" not in frame
    decoder = SSEDecoder()
    decoded = decoder.feed(b"".join(encode_event(event) for event in events)) + decoder.flush()
    assert [(item.event, json.loads(item.data)) for item in decoded] == [(e["type"], e) for e in events]
