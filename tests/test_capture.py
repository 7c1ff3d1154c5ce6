"""Recovering the complete answer from what the client was sent, in each dialect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from router.capture import captured, hub_message_from_json, responses_to_hub
from router.protocol.anthropic_stream import message_to_events
from router.protocol.sse import CHAT_DONE, encode_data, encode_named
from router.protocol.streams import ClientEncoder
from router.types import Dialect, JSONObject

MESSAGE: JSONObject = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
    "content": [{"type": "text", "text": "Paris is the capital of France."}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 7, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
}


def client_frames(dialect: Dialect) -> list[bytes]:
    encoder = ClientEncoder(dialect, "m", {"stream_options": {"include_usage": True}})
    frames = [frame for event in message_to_events(MESSAGE) for frame in encoder.feed(event)]
    return frames + encoder.finish()


async def replay(frames: list[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


def run_capture(dialect: Dialect, frames: list[bytes]) -> tuple[list[bytes], JSONObject | None]:
    seen: list[JSONObject | None] = []

    async def on_complete(message: JSONObject | None) -> None:
        seen.append(message)

    async def collect() -> list[bytes]:
        return [frame async for frame in captured(replay(frames), dialect, on_complete)]

    relayed = asyncio.run(collect())
    return relayed, seen[0]


def test_streams_in_each_dialect_are_rebuilt_and_relayed_unchanged() -> None:
    for dialect in Dialect:
        frames = client_frames(dialect)
        relayed, message = run_capture(dialect, frames)
        assert relayed == frames
        assert message is not None, dialect
        assert message["content"][0]["text"] == "Paris is the capital of France."
        assert message["stop_reason"] == "end_turn"
        assert message["usage"]["output_tokens"] == 7


def test_a_stream_that_ends_in_an_error_is_not_captured() -> None:
    frames = [encode_named({"type": "message_start", "message": {**MESSAGE, "content": []}}),
              encode_named({"type": "error", "error": {"type": "overloaded_error", "message": "x"}})]
    assert run_capture(Dialect.ANTHROPIC, frames)[1] is None
    chat = [encode_data({"choices": [{"index": 0, "delta": {"content": "half"}, "finish_reason": None}]})]
    assert run_capture(Dialect.OPENAI_CHAT, chat)[1] is None
    assert run_capture(Dialect.OPENAI_CHAT, [*chat, CHAT_DONE])[1] is not None


def test_json_answers_in_each_dialect() -> None:
    assert hub_message_from_json(Dialect.ANTHROPIC, orjson.dumps(MESSAGE)) == MESSAGE
    chat = {"id": "c", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    converted = hub_message_from_json(Dialect.OPENAI_CHAT, orjson.dumps(chat))
    assert converted is not None and converted["stop_reason"] == "max_tokens"
    response = {"object": "response", "id": "r", "status": "completed", "model": "m",
                "output": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'}],
                "usage": {"input_tokens": 9, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 4}}}
    hub = responses_to_hub(response)
    assert hub["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}]
    assert hub["stop_reason"] == "tool_use" and hub["usage"]["cache_read_input_tokens"] == 4
    assert hub_message_from_json(Dialect.OPENAI_CHAT, b'{"error": {}}') is None
    assert hub_message_from_json(Dialect.ANTHROPIC, b"not json") is None
