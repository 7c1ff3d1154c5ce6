"""Streaming translators, checked against the real SDKs' stream accumulators."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.lib.streaming._messages import accumulate_event, build_events
from anthropic.types import RawMessageStreamEvent
from anthropic.types.parsed_message import ParsedMessage
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from router.protocol.chat_stream import AnthropicToChatStream, ChatToAnthropicStream

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
CHAT_ID = "chatcmpl-ec67ee9bbe62460b96bf7d65f5221"


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A chat chunk shaped like the captured fixtures."""
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": 1795876359,
        "model": "gpt-x",
        "system_fingerprint": "fp_capture",
        "choices": choices,
        **extra,
    }


USAGE_CHUNK = _chunk(
    usage={
        "prompt_tokens": 1057,
        "completion_tokens": 56,
        "total_tokens": 1113,
        "prompt_tokens_details": {"cached_tokens": 1000, "audio_tokens": 0},
    }
)
CHAT_TEXT_STREAM = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "Hi! "}),
    _chunk({"content": "This is the capture server."}),
    _chunk({}, "stop"),
    USAGE_CHUNK,
]
CHAT_TEXT_TWO_TOOLS_STREAM = [
    _chunk({"role": "assistant", "content": None, "refusal": None}),
    _chunk({"content": "Checking "}),
    _chunk({"content": "both."}),
    _chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
    _chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz":'},
                }
            ]
        }
    ),
    _chunk({"tool_calls": [{"index": 1, "function": {"arguments": ' "CET"}'}}]}),
    _chunk({}, "tool_calls"),
    USAGE_CHUNK,
]

ANTHROPIC_THINKING_TOOL_STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_0148d96a49970143acaab474c8",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 58,
                "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 400,
                "output_tokens": 1,
                "service_tier": "standard",
            },
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Let me think."},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "I'll "}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "use tools."}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": 'ris"}'},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "content_block_start",
        "index": 3,
        "content_block": {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 3,
        "delta": {"type": "input_json_delta", "partial_json": '{"tz": "CET"}'},
    },
    {"type": "content_block_stop", "index": 3},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 58,
            "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 400,
            "output_tokens": 60,
        },
    },
    {"type": "message_stop"},
]


def _anthropic_accumulate(events: list[dict[str, Any]]) -> ParsedMessage[Any]:
    """Run events through the anthropic SDK's MessageStream accumulation (typed, validated events)."""
    snapshot: ParsedMessage[Any] | None = None
    json_bufs: dict[int, bytes] = {}
    for raw in events:
        assert "type" in raw
        if raw["type"] in ("ping", "error"):
            continue
        event = EVENT_ADAPTER.validate_python(raw)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
        build_events(event=event, message_snapshot=snapshot)
    assert snapshot is not None
    return snapshot


def _openai_accumulate(chunks: list[dict[str, Any]]) -> Any:
    """Run chunks through the openai SDK's ChatCompletionStreamState."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for raw in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(raw))
    return state.get_final_completion()


def _sse(frames: list[bytes]) -> httpx2.Client:
    """An HTTP client answering every request with these SSE frames."""
    body = b"".join(frames)
    return httpx2.Client(
        transport=httpx2.MockTransport(
            lambda _: httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        )
    )


def _named(events: list[dict[str, Any]]) -> list[bytes]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


def _data(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]


def _to_anthropic(chunks: list[dict[str, Any]], model: str = "claude-alias") -> list[dict[str, Any]]:
    conv = ChatToAnthropicStream(model)
    events = [event for chunk in chunks for event in conv.feed(chunk)]
    return events + conv.finish()


def _to_chat(events: list[dict[str, Any]], include_usage: bool = True) -> list[dict[str, Any]]:
    conv = AnthropicToChatStream("gpt-alias", include_usage=include_usage, created=7)
    chunks = [chunk for event in events for chunk in conv.feed(event)]
    return chunks + conv.finish()


# ------------------------------------------------------------------ chat chunks -> anthropic events


def test_chat_text_stream_to_anthropic_events() -> None:
    events = _to_anthropic(CHAT_TEXT_STREAM)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]["message"]
    assert start["id"] == "msg_ec67ee9bbe62460b96bf7d65f5221" and start["model"] == "claude-alias"
    assert start["content"] == [] and start["stop_reason"] is None and "usage" in start
    assert events[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[5] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 57,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1000,
            "output_tokens": 56,
        },
    }
    message = _anthropic_accumulate(events)
    assert message.content[0].type == "text" and message.content[0].text == "Hi! This is the capture server."
    assert message.stop_reason == "end_turn"
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (57, 1000, 56)


def test_chat_stream_with_text_then_two_tool_calls() -> None:
    events = _to_anthropic(CHAT_TEXT_TWO_TOOLS_STREAM)
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(e["index"], e["content_block"]["type"]) for e in starts] == [
        (0, "text"),
        (1, "tool_use"),
        (2, "tool_use"),
    ]
    assert starts[1]["content_block"] == {
        "type": "tool_use",
        "id": "call_a",
        "name": "get_weather",
        "input": {},
    }
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1, 2]
    for event in events:
        if event["type"] == "content_block_delta":
            open_index = max(s["index"] for s in starts if events.index(s) < events.index(event))
            assert event["index"] == open_index
    message = _anthropic_accumulate(events)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Paris"}
    assert message.content[2].input == {"tz": "CET"}
    assert message.stop_reason == "tool_use"


def test_anthropic_sdk_stream_helper_accepts_translated_events() -> None:
    events = _to_anthropic(CHAT_TEXT_TWO_TOOLS_STREAM)
    client = anthropic.Anthropic(
        api_key="k", base_url="http://t", http_client=_sse(_named(events)), max_retries=0
    )
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Checking both."
    assert [getattr(b, "input", None) for b in final.content[1:]] == [{"city": "Paris"}, {"tz": "CET"}]
    assert final.usage.output_tokens == 56


def test_reasoning_content_becomes_a_thinking_block_with_empty_signature() -> None:
    events = _to_anthropic(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"reasoning_content": "Hmm. "}),
            _chunk({"reasoning_content": "Yes."}),
            _chunk({"content": "Answer"}),
            _chunk({}, "stop"),
        ]
    )
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": ""},
    } in events
    message = _anthropic_accumulate(events)
    assert message.content[0].type == "thinking" and message.content[0].thinking == "Hmm. Yes."
    assert message.content[1].type == "text" and message.content[1].text == "Answer"


@pytest.mark.parametrize(
    "order", ["finish_then_usage", "usage_then_finish", "usage_on_finish_chunk", "no_usage"]
)
def test_finish_reason_and_usage_in_any_order(order: str) -> None:
    usage = USAGE_CHUNK["usage"]
    tail = {
        "finish_then_usage": [_chunk({}, "length"), USAGE_CHUNK],
        "usage_then_finish": [USAGE_CHUNK, _chunk({}, "length")],
        "usage_on_finish_chunk": [_chunk({}, "length", usage=usage)],
        "no_usage": [_chunk({}, "length")],
    }[order]
    events = _to_anthropic([_chunk({"role": "assistant", "content": "Hi"}), *tail])
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    delta = events[-2]
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == (0 if order == "no_usage" else 56)
    assert _anthropic_accumulate(events).stop_reason == "max_tokens"


def test_chat_stream_ending_without_finish_reason_still_closes() -> None:
    events = _to_anthropic(CHAT_TEXT_TWO_TOOLS_STREAM[:5])
    assert [e["type"] for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    message = _anthropic_accumulate(events)
    assert message.stop_reason == "tool_use"
    assert message.content[1].type == "tool_use" and message.content[1].id == "call_a"
    empty = ChatToAnthropicStream("m").finish()
    assert [e["type"] for e in empty] == ["message_start", "message_delta", "message_stop"]
    assert _anthropic_accumulate(empty).content == []


def test_finish_is_emitted_once_and_feed_after_finish_is_ignored() -> None:
    conv = ChatToAnthropicStream("m")
    conv.feed(CHAT_TEXT_STREAM[0])
    assert conv.finish()[-1] == {"type": "message_stop"}
    assert conv.finish() == [] and conv.feed(CHAT_TEXT_STREAM[1]) == []


def test_chat_error_payload_becomes_an_anthropic_error_event() -> None:
    conv = ChatToAnthropicStream("m")
    first = conv.feed(CHAT_TEXT_STREAM[1])
    error = conv.feed(
        {
            "error": {
                "message": "upstream overloaded",
                "type": "server_error",
                "param": None,
                "code": "overloaded",
            }
        }
    )
    assert first[0]["type"] == "message_start"
    assert error == [
        {"type": "error", "error": {"type": "overloaded_error", "message": "upstream overloaded"}}
    ]
    assert conv.finish() == []


def test_same_index_tool_calls_with_new_ids_get_their_own_blocks() -> None:
    events = _to_anthropic(
        [
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "a", "arguments": "{}"},
                        }
                    ]
                }
            ),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "b", "arguments": '{"x": 1}'},
                        }
                    ]
                }
            ),
            _chunk({}, "stop"),
        ]
    )
    message = _anthropic_accumulate(events)
    assert [(b.id, b.input) for b in message.content] == [("c1", {}), ("c2", {"x": 1})]
    assert message.stop_reason == "tool_use"


# ------------------------------------------------------------------ anthropic events -> chat chunks


def test_anthropic_stream_to_chat_chunks_shape() -> None:
    chunks = _to_chat(ANTHROPIC_THINKING_TOOL_STREAM)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["id"] for c in chunks} == {"chatcmpl-0148d96a49970143acaab474c8"}
    assert all(
        c["object"] == "chat.completion.chunk" and c["created"] == 7 and c["model"] == "gpt-alias"
        for c in chunks
    )
    with_choices = [c for c in chunks if c["choices"]]
    assert all(c["choices"][0]["index"] == 0 and "delta" in c["choices"][0] for c in with_choices)
    assert [c["choices"][0]["finish_reason"] for c in with_choices][-1] == "tool_calls"
    assert all(c["choices"][0]["finish_reason"] is None for c in with_choices[:-1])
    assert with_choices[-1]["choices"][0]["delta"] == {}
    tool_starts = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in with_choices
        if "id" in c["choices"][0]["delta"].get("tool_calls", [{}])[0]
    ]
    assert tool_starts == [
        {
            "index": 0,
            "id": "toolu_01",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 1, "id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": ""}},
    ]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 478,
        "completion_tokens": 60,
        "total_tokens": 538,
        "prompt_tokens_details": {"cached_tokens": 400},
    }


def test_anthropic_stream_with_text_then_two_tool_calls_accumulates_in_openai_sdk() -> None:
    completion = _openai_accumulate(_to_chat(ANTHROPIC_THINKING_TOOL_STREAM))
    message = completion.choices[0].message
    assert message.content == "I'll use tools."
    assert getattr(message, "reasoning_content", None) == "Let me think."
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in message.tool_calls] == [
        ("toolu_01", "get_weather", {"city": "Paris"}),
        ("toolu_02", "get_time", {"tz": "CET"}),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (
        completion.usage.prompt_tokens == 478 and completion.usage.prompt_tokens_details.cached_tokens == 400
    )


def test_openai_sdk_stream_helper_accepts_translated_chunks() -> None:
    chunks = _to_chat(ANTHROPIC_THINKING_TOOL_STREAM)
    client = openai.OpenAI(
        api_key="k", base_url="http://t/v1", http_client=_sse(_data(chunks)), max_retries=0
    )
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "x"}]) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert {"content.delta", "tool_calls.function.arguments.done", "chunk"} <= kinds
    assert final.choices[0].message.tool_calls[1].function.arguments == '{"tz": "CET"}'
    assert final.usage is not None and final.usage.completion_tokens == 60


def test_usage_chunk_only_when_asked() -> None:
    chunks = _to_chat(ANTHROPIC_THINKING_TOOL_STREAM, include_usage=False)
    assert all(c["choices"] for c in chunks)
    assert _openai_accumulate(chunks).usage is None


def test_anthropic_stream_ending_without_message_delta_still_finishes() -> None:
    conv = AnthropicToChatStream("m", include_usage=True)
    chunks = [c for e in ANTHROPIC_THINKING_TOOL_STREAM[:13] for c in conv.feed(e)]
    tail = conv.finish()
    assert tail[0]["choices"][0]["finish_reason"] == "tool_calls" and tail[-1]["choices"] == []
    assert conv.finish() == [] and conv.feed({"type": "message_stop"}) == []
    completion = _openai_accumulate(chunks + tail)
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"city": "Pa'
    stop_only = _to_chat([ANTHROPIC_THINKING_TOOL_STREAM[0], {"type": "message_stop"}])
    assert stop_only[-2]["choices"][0]["finish_reason"] == "stop"
    assert _openai_accumulate(stop_only).choices[0].message.content == ""


def test_anthropic_error_event_becomes_an_openai_error_payload() -> None:
    conv = AnthropicToChatStream("m")
    first = conv.feed(ANTHROPIC_THINKING_TOOL_STREAM[0])
    error = conv.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert first[0]["choices"][0]["delta"]["role"] == "assistant"
    assert error == [
        {"error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded"}}
    ]
    assert conv.feed({"type": "message_stop"}) == [] and conv.finish() == []


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("refusal", "content_filter"),
    ],
)
def test_stream_stop_reasons(stop: str, finish: str) -> None:
    chunks = _to_chat(
        [
            ANTHROPIC_THINKING_TOOL_STREAM[0],
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 3},
            },
            {"type": "message_stop"},
        ],
        include_usage=False,
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == finish


def test_stream_round_trip_through_the_hub() -> None:
    chunks = _to_chat(_to_anthropic(CHAT_TEXT_TWO_TOOLS_STREAM))
    completion = _openai_accumulate(chunks)
    message = completion.choices[0].message
    assert message.content == "Checking both."
    assert [json.loads(t.function.arguments) for t in message.tool_calls] == [
        {"city": "Paris"},
        {"tz": "CET"},
    ]
    assert completion.usage.prompt_tokens == 1057 and completion.usage.completion_tokens == 56
