"""Response and error conversions between OpenAI chat and Anthropic Messages."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from router.protocol.chat_response import (
    anthropic_error_to_chat,
    anthropic_response_to_chat,
    chat_error_to_anthropic,
    chat_response_to_anthropic,
)

CHAT_TEXT = {
    "id": "chatcmpl-e5c496c80ae744828045db48d9eec",
    "object": "chat.completion",
    "created": 1795876359,
    "model": "gpt-x",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hi! This is the capture server.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 42,
        "completion_tokens": 25,
        "total_tokens": 67,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_capture",
}
CHAT_TOOLS = {
    "id": "chatcmpl-ff937d9349b048f99fcbead4379e7",
    "object": "chat.completion",
    "created": 1795876359,
    "model": "gpt-x",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_4506dbae9a61488f955f5625",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1042,
        "completion_tokens": 56,
        "total_tokens": 1098,
        "prompt_tokens_details": {"cached_tokens": 1000, "audio_tokens": 0},
    },
}
ANTHROPIC_TEXT = {
    "id": "msg_0153d820bc80d94d03af4c85e2",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [{"type": "text", "text": "Hi! This is the capture server."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 14,
        "service_tier": "standard",
    },
}
ANTHROPIC_THINKING_TOOL = {
    "id": "msg_01cd673d8d7f85493982e54eb6",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [
        {"type": "thinking", "thinking": "Let me think briefly.", "signature": "c2lnbmF0dXJl"},
        {"type": "text", "text": "I'll use a tool."},
        {
            "type": "tool_use",
            "id": "toolu_01359a5db3e0f24329ab91e966",
            "name": "get_weather",
            "input": {"city": "Paris"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 54,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 200,
        "output_tokens": 60,
        "service_tier": "standard",
    },
}


def _mock_client(body: dict[str, Any], status: int = 200) -> httpx2.Client:
    """An HTTP client whose every request gets this JSON answer."""
    return httpx2.Client(transport=httpx2.MockTransport(lambda _: httpx2.Response(status, json=body)))


# ------------------------------------------------------------------ chat -> anthropic


def test_chat_text_completion_to_anthropic_message() -> None:
    msg = chat_response_to_anthropic(CHAT_TEXT, "claude-alias")
    assert msg == {
        "id": "msg_e5c496c80ae744828045db48d9eec",
        "type": "message",
        "role": "assistant",
        "model": "claude-alias",
        "content": [{"type": "text", "text": "Hi! This is the capture server."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 42,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 25,
        },
    }
    Message.model_validate(msg, strict=False)
    client = anthropic.Anthropic(
        api_key="k", base_url="http://t", http_client=_mock_client(msg), max_retries=0
    )
    parsed = client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert parsed.content[0].type == "text" and parsed.usage.input_tokens == 42


def test_chat_tool_calls_with_cached_usage_to_anthropic() -> None:
    msg = chat_response_to_anthropic(CHAT_TOOLS, "m")
    assert msg["content"] == [
        {
            "type": "tool_use",
            "id": "call_4506dbae9a61488f955f5625",
            "name": "get_weather",
            "input": {"city": "Paris"},
        },
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {"tz": "CET"}},
    ]
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"] == {
        "input_tokens": 42,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1000,
        "output_tokens": 56,
    }
    Message.model_validate(msg)


def test_reasoning_content_becomes_a_leading_thinking_block() -> None:
    resp = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "42",
                    "reasoning_content": "Compute.",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "not json"}}
                    ],
                },
            }
        ],
    }
    msg = chat_response_to_anthropic(resp, "m")
    assert [b["type"] for b in msg["content"]] == ["thinking", "text", "tool_use"]
    assert msg["content"][0] == {"type": "thinking", "thinking": "Compute.", "signature": ""}
    assert msg["content"][2]["input"] == {"_raw": "not json"}
    assert msg["stop_reason"] == "tool_use"  # a server that says "stop" while calling tools
    assert msg["usage"]["output_tokens"] == 0
    Message.model_validate(msg)


def test_empty_choice_still_has_content_and_usage() -> None:
    msg = chat_response_to_anthropic({"id": "chatcmpl-x", "choices": []}, "m")
    assert msg["content"] == [] and msg["usage"]["input_tokens"] == 0
    assert msg["stop_reason"] == "end_turn"
    Message.model_validate(msg)


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_to_stop_reason(finish: str | None, stop: str) -> None:
    resp = {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}],
    }
    assert chat_response_to_anthropic(resp, "m")["stop_reason"] == stop


# ------------------------------------------------------------------ anthropic -> chat


def test_anthropic_text_message_to_chat_completion() -> None:
    out = anthropic_response_to_chat(ANTHROPIC_TEXT, "gpt-alias", created=123)
    assert out == {
        "id": "chatcmpl-0153d820bc80d94d03af4c85e2",
        "object": "chat.completion",
        "created": 123,
        "model": "gpt-alias",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi! This is the capture server.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 40,
            "completion_tokens": 14,
            "total_tokens": 54,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    ChatCompletion.model_validate(out)
    client = openai.OpenAI(api_key="k", base_url="http://t/v1", http_client=_mock_client(out), max_retries=0)
    parsed = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert parsed.choices[0].message.content == "Hi! This is the capture server."


def test_anthropic_thinking_tool_use_to_chat_with_cache_usage() -> None:
    out = anthropic_response_to_chat(ANTHROPIC_THINKING_TOOL, "m")
    assert isinstance(out["created"], int)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll use a tool."
    assert choice["message"]["reasoning_content"] == "Let me think briefly."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01359a5db3e0f24329ab91e966",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 264,
        "completion_tokens": 60,
        "total_tokens": 324,
        "prompt_tokens_details": {"cached_tokens": 200},
    }
    completion = ChatCompletion.model_validate(out)
    tool_call = completion.choices[0].message.tool_calls[0]
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}


def test_anthropic_tool_only_message_has_null_content() -> None:
    msg = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
    out = anthropic_response_to_chat(msg, "m")
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_stop_reason_to_finish_reason(stop: str | None, finish: str) -> None:
    out = anthropic_response_to_chat({**ANTHROPIC_TEXT, "stop_reason": stop}, "m")
    assert out["choices"][0]["finish_reason"] == finish


def test_response_round_trip_through_the_hub() -> None:
    back = anthropic_response_to_chat(chat_response_to_anthropic(CHAT_TOOLS, "m"), "m")
    original = CHAT_TOOLS["choices"][0]["message"]["tool_calls"]
    assert back["choices"][0]["message"]["tool_calls"] == original
    assert back["usage"]["prompt_tokens"] == 1042
    assert back["usage"]["prompt_tokens_details"]["cached_tokens"] == 1000


# ------------------------------------------------------------------ errors


KINDS = [
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
]


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_errors_round_trip_through_chat(kind: str) -> None:
    err = {"type": "error", "error": {"type": kind, "message": f"{kind} happened"}}
    chat = anthropic_error_to_chat(err)
    assert set(chat["error"]) == {"message", "type", "param", "code"}
    assert chat["error"]["message"] == f"{kind} happened"
    assert chat_error_to_anthropic(chat) == err


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (
            {"error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": None}},
            "invalid_request_error",
        ),
        (
            {
                "error": {
                    "message": "Incorrect API key",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            "authentication_error",
        ),
        (
            {
                "error": {
                    "message": "Rate limit",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            "rate_limit_error",
        ),
        (
            {"error": {"message": "no model", "type": "invalid_request_error", "code": "model_not_found"}},
            "not_found_error",
        ),
        ({"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}, "api_error"),
        ({"error": {"message": "busy", "type": "ServiceUnavailableError", "code": 503}}, "overloaded_error"),
        (
            {"error": {"message": "nope", "type": "BadRequestError", "param": None, "code": 400}},
            "invalid_request_error",
        ),
        ({"object": "error", "message": "forbidden", "type": "x", "code": 403}, "permission_error"),
        ({"error": "model 'x' not found"}, "api_error"),
        ({"error": {"message": "mystery"}}, "api_error"),
    ],
)
def test_chat_error_shapes_to_anthropic(err: dict[str, Any], kind: str) -> None:
    out = chat_error_to_anthropic(err)
    assert out["type"] == "error" and out["error"]["type"] == kind
    assert isinstance(out["error"]["message"], str) and out["error"]["message"]


def test_anthropic_error_types_map_to_openai_conventions() -> None:
    auth = anthropic_error_to_chat(
        {"type": "error", "error": {"type": "authentication_error", "message": "m"}}
    )
    assert auth["error"]["code"] == "invalid_api_key"
    overloaded = anthropic_error_to_chat(
        {"type": "error", "error": {"type": "overloaded_error", "message": "m"}}
    )
    assert overloaded["error"]["type"] == "server_error"
    unknown = anthropic_error_to_chat({"type": "error", "error": {"type": "weird_error", "message": "m"}})
    assert unknown["error"]["type"] == "server_error"
