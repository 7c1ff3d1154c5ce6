"""Request conversions between OpenAI chat and Anthropic Messages."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from router.protocol.chat_request import anthropic_request_to_chat, chat_request_to_anthropic

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _captured(send: Any) -> dict[str, Any]:
    """The JSON body an SDK call sends (through a mock transport), proving the SDK accepts the kwargs."""
    seen: dict[str, Any] = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.update(json.loads(request.content))
        return httpx2.Response(
            400, json={"type": "error", "error": {"type": "invalid_request_error", "message": "captured"}}
        )

    http_client = httpx2.Client(transport=httpx2.MockTransport(handler))
    with pytest.raises((anthropic.BadRequestError, openai.BadRequestError)):
        send(http_client)
    return seen


def _anthropic_sdk_accepts(request: dict[str, Any]) -> dict[str, Any]:
    """Send a converted request through the anthropic SDK; unknown kwargs would raise TypeError."""

    def send(http_client: httpx2.Client) -> None:
        client = anthropic.Anthropic(api_key="k", base_url="http://t", http_client=http_client, max_retries=0)
        client.messages.create(**request)

    return _captured(send)


def _openai_sdk_accepts(request: dict[str, Any]) -> dict[str, Any]:
    """Send a converted request through the openai SDK; unknown kwargs would raise TypeError."""

    def send(http_client: httpx2.Client) -> None:
        client = openai.OpenAI(api_key="k", base_url="http://t/v1", http_client=http_client, max_retries=0)
        client.chat.completions.create(**request)

    return _captured(send)


# ------------------------------------------------------------------ chat -> anthropic


def test_system_messages_at_any_position_are_kept_in_order() -> None:
    body = {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "assistant", "content": "Salut"},
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "again"},
        ],
    }
    out = chat_request_to_anthropic(body)
    assert out["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French."},
        {"type": "text", "text": "Be kind."},
    ]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][0]["content"] == [{"type": "text", "text": "hi"}]
    assert out["max_tokens"] == 4096
    assert _anthropic_sdk_accepts(out)["system"][2]["text"] == "Be kind."


def test_single_system_message_becomes_a_string_and_same_roles_merge() -> None:
    out = chat_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "c"},
            ],
        }
    )
    assert out["system"] == "S"
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b"},
                {"type": "text", "text": "c"},
            ],
        }
    ]


def test_multiple_tool_calls_and_tool_results_merge_into_one_user_turn() -> None:
    body = {
        "model": "gpt-x",
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Ro'},
                    },
                    {
                        "id": "call_3",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "Rainy"}]},
            {"role": "tool", "tool_call_id": "call_3", "content": ""},
            {"role": "user", "content": "Thanks"},
        ],
    }
    out = chat_request_to_anthropic(body)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    uses = out["messages"][1]["content"]
    assert uses == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"_raw": '{"city": "Ro'}},
        {"type": "tool_use", "id": "call_3", "name": "get_weather", "input": {}},
    ]
    results = out["messages"][2]["content"]
    assert results == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "Rainy"}]},
        {"type": "tool_result", "tool_use_id": "call_3"},
        {"type": "text", "text": "Thanks"},
    ]
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    _anthropic_sdk_accepts(out)


def test_tool_results_lead_a_user_turn_even_after_user_text() -> None:
    out = chat_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {"role": "user", "content": "note"},
                {"role": "tool", "tool_call_id": "c", "content": "ok"},
            ],
        }
    )
    assert [b["type"] for b in out["messages"][1]["content"]] == ["tool_result", "text"]


def test_image_parts_become_base64_or_url_sources() -> None:
    out = chat_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "high"},
                        },
                        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,QUJD"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                        {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}},
                        {
                            "type": "file",
                            "file": {
                                "filename": "a.pdf",
                                "file_data": "data:application/pdf;base64,JVBERi0=",
                            },
                        },
                    ],
                }
            ],
        }
    )
    content = out["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        },
    ]
    _anthropic_sdk_accepts(out)


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", False, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_tool_choice_mapping(choice: Any, parallel: Any, expected: Any) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER_TOOL],
    }
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert chat_request_to_anthropic(body).get("tool_choice") == expected


def test_tool_choice_without_tools_is_dropped() -> None:
    out = chat_request_to_anthropic(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "required",
            "tools": [{"type": "custom", "custom": {"name": "c"}}],
        }
    )
    assert "tools" not in out and "tool_choice" not in out


def test_sampling_fields_user_stream_and_unknown_fields() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "x"}],
        "stop": "END",
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "max_completion_tokens": 100,
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
        "logit_bias": {"1": 2},
        "n": 1,
        "presence_penalty": 0.1,
        "store": True,
    }
    out = chat_request_to_anthropic(body)
    assert out == {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
        "max_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    listed = chat_request_to_anthropic({"model": "m", "messages": [], "stop": ["a", "b"], "max_tokens": 9})
    assert listed["stop_sequences"] == ["a", "b"] and listed["max_tokens"] == 9


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384)])
def test_reasoning_effort_enables_thinking_with_room_for_the_answer(effort: str, budget: int) -> None:
    out = chat_request_to_anthropic(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": effort,
            "max_tokens": 2000,
            "temperature": 0.3,
        }
    )
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] > budget
    assert "temperature" not in out


def test_reasoning_effort_keeps_a_larger_max_tokens_and_skips_forced_tools() -> None:
    out = chat_request_to_anthropic(
        {"model": "m", "messages": [], "reasoning_effort": "low", "max_tokens": 8000}
    )
    assert out["max_tokens"] == 8000
    forced = chat_request_to_anthropic(
        {
            "model": "m",
            "messages": [],
            "reasoning_effort": "low",
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
        }
    )
    assert "thinking" not in forced


def test_response_format_json_schema_becomes_output_config() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
        "additionalProperties": False,
    }
    out = chat_request_to_anthropic(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "t", "schema": schema, "strict": True},
            },
        }
    )
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    _anthropic_sdk_accepts(out)
    plain = chat_request_to_anthropic(
        {"model": "m", "messages": [], "response_format": {"type": "json_object"}}
    )
    assert "output_config" not in plain


def test_invalid_requests_raise_value_error() -> None:
    with pytest.raises(ValueError):
        chat_request_to_anthropic({"model": "m"})
    with pytest.raises(ValueError):
        chat_request_to_anthropic({"model": "m", "messages": [{"role": "robot", "content": "x"}]})
    with pytest.raises(ValueError):
        anthropic_request_to_chat({"model": "m", "messages": ["x"]})


# ------------------------------------------------------------------ anthropic -> chat


CLAUDE_CODE_REQUEST: dict[str, Any] = {
    "model": "claude-opus-4-8",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>Today is 2026-11-28</system-reminder>"},
                {"type": "text", "text": "read hello.txt", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "system", "content": "Available agent types: general-purpose"},
    ],
    "system": [
        {
            "type": "text",
            "text": "x-anthropic-billing-header: cc_version=2.1.197.abc; cc_entrypoint=sdk-cli;",
        },
        {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Main prompt.", "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [
        {
            "name": "Read",
            "description": "Read a file",
            "input_schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"file_path": {"type": "string"}},
                "required": ["file_path"],
                "additionalProperties": False,
            },
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ],
    "metadata": {"user_id": '{"device_id":"d","account_uuid":"","session_id":"s"}'},
    "max_tokens": 64000,
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "stream": True,
}


def test_claude_code_request_to_chat() -> None:
    out = anthropic_request_to_chat(CLAUDE_CODE_REQUEST)
    assert out["messages"] == [
        {"role": "system", "content": "You are a Claude agent.\n\nMain prompt."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>Today is 2026-11-28</system-reminder>"},
                {"type": "text", "text": "read hello.txt"},
            ],
        },
        {"role": "system", "content": "Available agent types: general-purpose"},
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "description": "Read a file",
                "parameters": {
                    "type": "object",
                    "properties": {"file_path": {"type": "string"}},
                    "required": ["file_path"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    assert out["max_tokens"] == 64000
    assert out["user"] == CLAUDE_CODE_REQUEST["metadata"]["user_id"]
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    for dropped in (
        "thinking",
        "context_management",
        "output_config",
        "metadata",
        "system",
        "response_format",
    ):
        assert dropped not in out
    assert "$schema" in CLAUDE_CODE_REQUEST["tools"][0]["input_schema"]  # the input is not mutated
    sent = _openai_sdk_accepts(out)
    assert sent["messages"][2]["role"] == "system"


def test_tool_round_trip_history_to_chat() -> None:
    body = {
        "model": "m",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Two calls.", "signature": "c2ln"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "I'll check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here you go"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "Sunny",
                        "is_error": False,
                        "cache_control": {"type": "ephemeral"},
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "city not found"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                            },
                        ],
                    },
                ],
            },
        ],
    }
    out = anthropic_request_to_chat(body)
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "I'll check.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: city not found"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "text", "text": "Here you go"},
            ],
        },
    ]
    _openai_sdk_accepts(out)


def test_assistant_with_only_tool_use_has_null_content_and_url_images() -> None:
    out = anthropic_request_to_chat(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
                },
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            ],
        }
    )
    assert out["messages"][0] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
    }
    assert out["messages"][1]["content"] is None
    assert out["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "t", "content": ""}


@pytest.mark.parametrize(
    ("choice", "expected_choice", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        (
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
            {"type": "function", "function": {"name": "f"}},
            False,
        ),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
    ],
)
def test_tool_choice_reverse(choice: Any, expected_choice: Any, parallel: Any) -> None:
    out = anthropic_request_to_chat(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [],
            "tool_choice": choice,
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        }
    )
    assert out["tool_choice"] == expected_choice
    assert out.get("parallel_tool_calls") == parallel


def test_sampling_and_output_format_reverse() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    out = anthropic_request_to_chat(
        {
            "model": "claude-x",
            "max_tokens": 300,
            "temperature": 1,
            "top_p": 0.5,
            "top_k": 5,
            "stop_sequences": ["\n\nHuman:"],
            "messages": [{"role": "user", "content": "x"}],
            "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": schema}},
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "any"},
        }
    )
    assert out == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 300,
        "temperature": 1,
        "top_p": 0.5,
        "stop": ["\n\nHuman:"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}},
    }
    _openai_sdk_accepts(out)


def test_chat_request_survives_a_round_trip_through_the_hub() -> None:
    body = {
        "model": "gpt-x",
        "max_tokens": 200,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
    }
    back = anthropic_request_to_chat(chat_request_to_anthropic(body))
    assert back["messages"] == body["messages"]
    assert back["tools"] == body["tools"] and back["tool_choice"] == "auto"


def test_temperature_above_anthropic_range_is_clamped() -> None:
    out = chat_request_to_anthropic({"model": "m", "messages": [], "temperature": 1.7, "top_p": 1})
    assert out["temperature"] == 1 and out["top_p"] == 1
