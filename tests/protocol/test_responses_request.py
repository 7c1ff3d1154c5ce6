"""Responses API requests (SDK and Codex shapes) converted to Anthropic Messages requests."""

from __future__ import annotations

from typing import Any

import pytest

from router.protocol.responses_request import responses_request_to_anthropic
from router.types import JSONObject

OBJECT: JSONObject = {"type": "object", "properties": {}, "additionalProperties": False}
CITY_SCHEMA: JSONObject = {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"], "additionalProperties": False}
WEATHER_TOOL: JSONObject = {"type": "function", "name": "get_weather", "description": "Weather for a city",
                            "parameters": CITY_SCHEMA, "strict": True}


def _text(text: str, kind: str = "input_text") -> JSONObject:
    return {"type": kind, "text": text}


def _message(role: str, *texts: str) -> JSONObject:
    return {"type": "message", "id": f"msg_{role}", "role": role, "content": [_text(t) for t in texts]}


def _function(name: str, description: str) -> JSONObject:
    return {"type": "function", "name": name, "description": description, "strict": False,
            "parameters": OBJECT}


CODEX_TOOLS: list[JSONObject] = [
    _function("exec_command", "Runs a command in a PTY"),
    {"type": "namespace", "name": "multi_agent_v1", "description": "Tools for sub-agents.",
     "tools": [_function("close_agent", "Close an agent"), _function("spawn_agent", "Spawn an agent")]},
    _function("get_goal", "Get the goal"),
    {"type": "web_search", "external_web_access": False},
]
CODEX_FOLLOWUP: JSONObject = {
    "model": "gpt-5-codex",
    "stream": True,
    "input": [
        _message("developer", "You are Codex."),
        _message("developer", "Sandbox: workspace-write.", "Approvals: never."),
        _message("user", "<environment_context>cwd</environment_context>"),
        _message("user", "run echo"),
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
        {"type": "function_call", "status": "completed", "id": "fc_1", "name": "exec_command",
         "arguments": "{\"cmd\": \"echo hello-from-codex\"}", "call_id": "call_88"},
        {"type": "function_call_output", "id": "fco_1", "call_id": "call_88",
         "output": "Chunk ID: 49ac7f\nOutput:\nhello-from-codex\n"},
        {"type": "local_shell_call", "id": "ls_1", "call_id": "x", "action": {}, "status": "completed"},
    ],
    "tools": CODEX_TOOLS,
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "01a22291-549c-74b0-a72a-8fc08a84dbf7",
    "client_metadata": {"session_id": "01a22291"},
}


def test_string_input_with_instructions() -> None:
    body = {"model": "gpt-5", "input": "say hi", "instructions": "Be brief.", "stream": True}
    assert responses_request_to_anthropic(body) == {
        "model": "gpt-5", "messages": [{"role": "user", "content": "say hi"}], "max_tokens": 4096,
        "system": "Be brief.", "stream": True,
    }


def test_codex_tool_followup() -> None:
    result = responses_request_to_anthropic(CODEX_FOLLOWUP)
    assert result["system"] == [
        {"type": "text", "text": "You are Codex."},
        {"type": "text", "text": "Sandbox: workspace-write.\n\nApprovals: never."},
    ]
    call = {"type": "tool_use", "id": "call_88", "name": "exec_command",
            "input": {"cmd": "echo hello-from-codex"}}
    output = {"type": "tool_result", "tool_use_id": "call_88",
              "content": "Chunk ID: 49ac7f\nOutput:\nhello-from-codex\n"}
    environment = {"type": "text", "text": "<environment_context>cwd</environment_context>"}
    assert result["messages"] == [
        {"role": "user", "content": [environment, {"type": "text", "text": "run echo"}]},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [output]},
    ]
    assert [tool["name"] for tool in result["tools"]] == [
        "exec_command", "multi_agent_v1__close_agent", "multi_agent_v1__spawn_agent", "get_goal"]
    assert result["tools"][1] == {"name": "multi_agent_v1__close_agent", "description": "Close an agent",
                                  "strict": False, "input_schema": OBJECT}
    assert result["tool_choice"] == {"type": "auto"}
    assert result["stream"] is True and result["max_tokens"] == 4096
    assert "thinking" not in result and "metadata" not in result
    dropped = ("store", "include", "prompt_cache_key", "client_metadata", "reasoning", "parallel_tool_calls")
    assert not set(dropped) & set(result)


def test_sdk_tools_followup_with_easy_messages() -> None:
    body = {"model": "gpt-5", "tools": [WEATHER_TOOL], "input": [
        {"role": "user", "content": "weather in Paris?"},
        {"arguments": "{\"city\": \"Paris\"}", "call_id": "call_e2", "name": "get_weather",
         "type": "function_call", "id": "fc_59", "status": "completed"},
        {"type": "function_call_output", "call_id": "call_e2", "output": "18C sunny"},
    ]}
    result = responses_request_to_anthropic(body)
    assert result["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_e2", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_e2",
                                      "content": "18C sunny"}]},
    ]
    assert result["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                                "strict": True, "input_schema": CITY_SCHEMA}]
    assert "tool_choice" not in result


def test_system_anywhere_roles_merged_and_parts() -> None:
    body = {"model": "m", "instructions": "Top.", "input": [
        {"role": "user", "content": [_text("look"),
                                     {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K"},
                                     {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
                                     {"type": "input_file", "file_data": "data:application/pdf;base64,JVBER",
                                      "filename": "a.pdf"},
                                     _text("")]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "one", "annotations": []}]},
        {"role": "system", "content": "Mid system."},
        {"role": "assistant", "content": "two"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "not json"},
        {"role": "user", "content": "after"},
        {"type": "function_call_output", "call_id": "c1", "output": [_text("out")]},
    ]}
    result = responses_request_to_anthropic(body)
    assert result["system"] == [{"type": "text", "text": "Top."}, {"type": "text", "text": "Mid system."}]
    assert [m["role"] for m in result["messages"]] == ["user", "assistant", "user"]
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}
    assert result["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": pdf, "title": "a.pdf"},
    ]
    assert result["messages"][1]["content"] == [
        {"type": "text", "text": "one"}, {"type": "text", "text": "two"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"arguments": "not json"}},
    ]
    assert result["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "out"}]},
        {"type": "text", "text": "after"},
    ]


def test_namespaced_function_call_item_gets_flat_name() -> None:
    body = {"model": "m", "tools": CODEX_TOOLS, "input": [
        {"role": "user", "content": "spawn"},
        {"type": "function_call", "call_id": "c9", "name": "spawn_agent", "namespace": "multi_agent_v1",
         "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c9", "output": "ok"},
    ]}
    tool_use = responses_request_to_anthropic(body)["messages"][1]["content"][0]
    assert tool_use == {"type": "tool_use", "id": "c9", "name": "multi_agent_v1__spawn_agent", "input": {}}


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "name": "get_weather"}, None, {"type": "tool", "name": "get_weather"}),
    ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_tool_choice_mapping(choice: Any, parallel: Any, expected: JSONObject | None) -> None:
    body: JSONObject = {"model": "m", "input": "hi", "tools": [WEATHER_TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert responses_request_to_anthropic(body).get("tool_choice") == expected


def test_tool_choice_dropped_without_usable_tools() -> None:
    body = {"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "required"}
    result = responses_request_to_anthropic(body)
    assert "tools" not in result and "tool_choice" not in result


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384)])
def test_reasoning_effort_enables_thinking(effort: str, budget: int) -> None:
    body = {"model": "m", "input": "think", "reasoning": {"effort": effort}, "max_output_tokens": 2000,
            "temperature": 0.2, "top_p": 0.5}
    result = responses_request_to_anthropic(body)
    assert result["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert result["max_tokens"] > budget
    assert "temperature" not in result and "top_p" not in result


def test_reasoning_skipped_in_tool_loop_and_with_forced_tool() -> None:
    loop = {"model": "m", "reasoning": {"effort": "high"}, "tools": [WEATHER_TOOL], "input": [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"},
        {"type": "function_call_output", "call_id": "c", "output": "cold"},
    ]}
    assert "thinking" not in responses_request_to_anthropic(loop)
    forced = {"model": "m", "input": "hi", "reasoning": {"effort": "low"}, "tools": [WEATHER_TOOL],
              "tool_choice": "required"}
    assert "thinking" not in responses_request_to_anthropic(forced)
    minimal = {"model": "m", "input": "hi", "reasoning": {"effort": "minimal"}}
    assert "thinking" not in responses_request_to_anthropic(minimal)


def test_sampling_format_metadata_and_limits() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"],
              "additionalProperties": False}
    text_format = {"type": "json_schema", "name": "t", "schema": schema, "strict": True}
    body = {"model": "m", "input": "hi", "max_output_tokens": 321, "temperature": 0.3, "user": "user-7",
            "metadata": {"team": "a"}, "text": {"format": text_format}}
    result = responses_request_to_anthropic(body)
    assert result["max_tokens"] == 321 and result["temperature"] == 0.3
    assert result["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert result["metadata"] == {"user_id": "user-7"}
    only_top_p = responses_request_to_anthropic({"model": "m", "input": "hi", "top_p": 0.9,
                                                 "metadata": {"k": "v"}})
    assert only_top_p["top_p"] == 0.9 and "metadata" not in only_top_p and "stream" not in only_top_p
    both = responses_request_to_anthropic({"model": "m", "input": "hi", "top_p": 0.9, "temperature": 0.1})
    assert both["temperature"] == 0.1 and "top_p" not in both


def test_previous_response_id_is_rejected() -> None:
    with pytest.raises(ValueError, match="previous_response_id is not supported"):
        responses_request_to_anthropic({"model": "m", "input": "more", "previous_response_id": "resp_1"})
