"""Property-based fuzzing of request bodies: one field of a valid request, at any depth, replaced by any JSON value.

Every endpoint (both client dialects) against three kinds of model: served in the client's own dialect, translated
to the other provider's dialect, and cascaded (`cascade/mixed`: an OpenAI draft verified by an Anthropic model).
Whatever the value, the proxy answers 200 or a 4xx in the client's dialect, never a 500; a refused request never
reaches the upstream.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.app import create_app
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource
from router.replay.server import create_upstream_app
from tests.support import proxy_settings

ANTHROPIC_HEADERS: Final = {"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"}
OPENAI_HEADERS: Final = {"authorization": "Bearer k", "content-type": "application/json"}
RULES: Final = [{"name": "mixed", "draft_model": "gpt-4o-mini", "verifier_model": "claude-sonnet-5",
                 "quality_threshold": 0.6}]
IMAGE: Final = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
PDF: Final = "JVBERi0xLjQKJeLjz9MK"
SCHEMA: Final = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
MODELS: Final = {  # model kind -> (model for an Anthropic client, model for an OpenAI client)
    "same": ("claude-sonnet-5", "gpt-4o-mini"),
    "translated": ("gpt-4o-mini", "claude-sonnet-5"),
    "cascade": ("cascade/mixed", "cascade/mixed"),
}
ENDPOINTS: Final = ("/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/v1/responses")
EXAMPLES: Final = 400
"""Hypothesis examples for each endpoint and model kind (12 pairs): about 25 s on two cores."""
DELETE: Final = object()
"""A replacement that removes the field instead."""


def anthropic_bodies(model: str) -> list[dict[str, Any]]:
    """Valid Messages requests using every field the proxy reads."""
    tool_turn = {
        "model": model, "max_tokens": 2048, "temperature": 0.5, "top_p": 0.9, "top_k": 5,
        "stop_sequences": ["STOP"], "stream": False, "metadata": {"user_id": "u1"},
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "get_weather", "description": "Weather.", "input_schema": SCHEMA},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
                 "content": [{"type": "text", "text": "Sunny"}]},
                {"type": "text", "text": "And now?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE}}]},
        ],
    }
    documents = {
        "model": model, "max_tokens": 64, "stream": True, "system": "Answer in JSON.",
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "tools": [{"name": "get_weather", "input_schema": SCHEMA, "strict": True}],
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "title": "a.pdf", "source": {"type": "base64", "media_type": "application/pdf",
                                                                  "data": PDF}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "text", "text": "Which city?"}]},
            {"role": "assistant", "content": "Paris"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "done"}]},
        ],
    }
    return [tool_turn, documents]


def count_tokens_bodies(model: str) -> list[dict[str, Any]]:
    """Valid token-count requests."""
    keys = ("model", "messages", "system", "tools", "tool_choice", "thinking")
    return [{key: value for key, value in body.items() if key in keys} for body in anthropic_bodies(model)]


def chat_bodies(model: str) -> list[dict[str, Any]]:
    """Valid Chat Completions requests using every field the proxy reads."""
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": SCHEMA,
                                             "strict": False}}
    tool_turn = {
        "model": model, "max_tokens": 64, "max_completion_tokens": 64, "temperature": 0.5, "top_p": 0.9,
        "stop": ["STOP"], "n": 1, "user": "u1", "metadata": {"k": "v"}, "stream": False, "seed": 1,
        "presence_penalty": 0, "frequency_penalty": 0, "logprobs": False, "parallel_tool_calls": True,
        "response_format": {"type": "text"}, "reasoning_effort": "low", "tools": [tool], "tool_choice": "auto",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "name": "ann", "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}", "detail": "low"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}}]},
            {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            {"role": "user", "content": "Thanks, and tomorrow?"},
        ],
    }
    legacy = {
        "model": model, "stream": True, "stream_options": {"include_usage": True}, "stop": "STOP",
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": SCHEMA, "strict": True}},
        "functions": [{"name": "get_weather", "parameters": SCHEMA}], "function_call": {"name": "get_weather"},
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "tools": [tool],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Which city?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "One moment."}],
             "function_call": {"name": "get_weather", "arguments": "{}"}},
            {"role": "function", "name": "get_weather", "content": "Sunny"},
            {"role": "assistant", "content": "Sunny.", "tool_calls": []},
            {"role": "user", "content": "ok"},
        ],
    }
    return [tool_turn, legacy]


def responses_bodies(model: str) -> list[dict[str, Any]]:
    """Valid Responses requests using every field the proxy reads."""
    tool_turn = {
        "model": model, "instructions": "Be brief.", "max_output_tokens": 64, "temperature": 0.5, "top_p": 0.9,
        "stream": False, "store": False, "metadata": {"k": "v"}, "user": "u1", "parallel_tool_calls": True,
        "reasoning": {"effort": "low", "summary": "auto"}, "text": {"format": {"type": "text"}},
        "truncation": "disabled", "tool_choice": "auto", "include": [],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather.", "parameters": SCHEMA,
                   "strict": False},
                  {"type": "namespace", "name": "maps", "tools": [{"type": "function", "name": "route"}]},
                  {"type": "web_search"}],
        "input": [
            {"role": "developer", "content": "Use tools."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Weather in Paris?"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{IMAGE}", "detail": "auto"},
                {"type": "input_file", "filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]},
            {"role": "user", "content": "And tomorrow?"},
        ],
    }
    simple = {
        "model": model, "input": "Which city?", "stream": True,
        "text": {"format": {"type": "json_schema", "name": "out", "schema": SCHEMA, "strict": True}},
        "tool_choice": {"type": "function", "name": "route", "namespace": "maps"},
        "tools": [{"type": "namespace", "name": "maps", "description": "Maps.",
                   "tools": [{"type": "function", "name": "route", "parameters": SCHEMA}]}],
    }
    return [tool_turn, simple]


BODIES: Final = {"/v1/messages": anthropic_bodies, "/v1/messages/count_tokens": count_tokens_bodies,
                 "/v1/chat/completions": chat_bodies, "/v1/responses": responses_bodies}

Path = tuple[str | int, ...]


FREE_FORM: Final = frozenset({"input_schema", "parameters", "schema"})
"""Keys holding a JSON schema: any value inside one is the client's own business."""


def paths_of(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every key and index of a JSON value, at any depth, but not inside a schema or a tool call's input."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        if key not in FREE_FORM and not (key == "input" and prefix):
            yield from paths_of(child, (*prefix, key))


def replaced(body: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of the body with the field at `path` set to `value` (or removed, for DELETE)."""
    result = copy.deepcopy(body)
    parent: Any = result
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return result


WORDS: Final = ("text", "image", "document", "tool_use", "tool_result", "thinking", "function", "namespace", "auto",
                "none", "any", "tool", "required", "allowed_tools", "custom", "user", "assistant", "system",
                "developer", "message", "function_call", "function_call_output", "input_text", "input_image",
                "input_file", "output_text", "refusal", "image_url", "file", "json_schema", "base64", "url",
                "enabled", "low", "get_weather", "data:image/png;base64,AAAA", "data:application/pdf;base64,AAAA", "")
KINDS: Final = (None, True, False, 0, 1, -1, 1.5, "", "x", [], {}, [None], [1], ["x"], {"": None})
"""One value of each JSON type (and the edge cases of each): the type confusions most worth trying."""
SCALARS: Final = (st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64)
                  | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12) | st.sampled_from(WORDS))
KEYS: Final = st.sampled_from(("type", "text", "name", "id", "content", "role", "url", "source", "input",
                               "function", "arguments", "schema", "format", "tools")) | st.text(max_size=6)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    typed = st.fixed_dictionaries({"type": st.sampled_from(WORDS)}, optional={
        key: children for key in ("text", "name", "id", "content", "source", "function", "url", "input", "tools")})
    return st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3) | typed


REPLACEMENTS: Final = st.one_of(st.sampled_from(KINDS), SCALARS, st.recursive(SCALARS, _containers, max_leaves=8),
                                st.just(DELETE))
"""Any JSON value (about a quarter of the draws one of KINDS), or DELETE."""


@pytest.fixture(scope="module")
def fuzz_proxy() -> Iterator[tuple[BackgroundServer, BackgroundServer]]:
    """A scripted upstream of its own (its received list shows whether a request got through) and a proxy."""
    with BackgroundServer(create_upstream_app(ScriptedSource())) as upstream:
        app = create_app(proxy_settings(upstream.url, cascade_rules=RULES))
        with BackgroundServer(app) as proxy:
            yield proxy, upstream


@pytest.fixture(scope="module")
def http(fuzz_proxy: tuple[BackgroundServer, BackgroundServer]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_proxy[0].url, timeout=30) as client:
        yield client


def received(upstream: BackgroundServer) -> int:
    return len(upstream.app.state.received)  # type: ignore[attr-defined]


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = ANTHROPIC_HEADERS if path.startswith("/v1/messages") else OPENAI_HEADERS
    return http.post(path, content=json.dumps(body).encode(), headers=headers)


def assert_dialect_error(path: str, response: httpx.Response) -> dict[str, Any]:
    """The error of a 4xx answer, checked against the client's dialect."""
    data = response.json()
    if path.startswith("/v1/messages"):
        assert data["type"] == "error", data
        error: dict[str, Any] = data["error"]
    else:
        error = data["error"]
        assert "param" in error, data
    assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"], data
    return error


def check(http: httpx.Client, upstream: BackgroundServer, path: str, body: dict[str, Any]) -> httpx.Response:
    """Send a body: 200 or a dialect 4xx that reached no upstream; never a 500."""
    before = received(upstream)
    response = post(http, path, body)
    assert response.status_code < 500, f"{response.status_code} {response.text[:500]}\nbody: {json.dumps(body)}"
    assert "internal error" not in response.text, response.text[:500]
    if response.status_code >= 400:
        assert_dialect_error(path, response)
        assert received(upstream) == before, f"a refused request reached the upstream: {json.dumps(body)}"
    return response


CASES: Final = [(path, kind) for path in ENDPOINTS for kind in MODELS]


@pytest.mark.parametrize(("path", "kind"), CASES)
def test_valid_bases_are_served(http: httpx.Client, fuzz_proxy: tuple[BackgroundServer, BackgroundServer],
                                path: str, kind: str) -> None:
    model = MODELS[kind][0 if path.startswith("/v1/messages") else 1]
    for body in BODIES[path](model):
        response = check(http, fuzz_proxy[1], path, body)
        assert response.status_code == 200, response.text[:500]


@pytest.mark.parametrize(("path", "kind"), CASES)
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_value_in_any_field_is_never_a_500(http: httpx.Client,
                                               fuzz_proxy: tuple[BackgroundServer, BackgroundServer],
                                               path: str, kind: str, data: st.DataObject) -> None:
    model = MODELS[kind][0 if path.startswith("/v1/messages") else 1]
    bodies = BODIES[path](model)
    body = data.draw(st.sampled_from(bodies), label="body")
    where = data.draw(st.sampled_from(list(paths_of(body))), label="field")
    check(http, fuzz_proxy[1], path, replaced(body, where, data.draw(REPLACEMENTS, label="value")))


REGRESSIONS: Final = [
    ("/v1/messages", "same", ["messages", 0, "role"], ["user"], "messages.0.role"),
    ("/v1/messages", "cascade", ["messages", 0, "role"], {"role": "user"}, "messages.0.role"),
    ("/v1/messages/count_tokens", "translated", ["messages", 1, "role"], [], "messages.1.role"),
    ("/v1/chat/completions", "same", ["messages", 0, "role"], ["system"], "messages.0.role"),
    ("/v1/chat/completions", "translated", ["messages", 2, "role"], {"a": 1}, "messages.2.role"),
    ("/v1/chat/completions", "translated", ["messages", 3, "tool_calls"], 7, "messages.3.tool_calls"),
    ("/v1/chat/completions", "cascade", ["messages", 3, "tool_calls"], True, "messages.3.tool_calls"),
    ("/v1/chat/completions", "cascade", ["messages", 3, "tool_calls"], 1.5, "messages.3.tool_calls"),
    ("/v1/chat/completions", "same", ["messages", 3, "tool_calls"], False, "messages.3.tool_calls"),
    ("/v1/chat/completions", "translated", ["functions"], 7, "functions"),
    ("/v1/chat/completions", "cascade", ["tool_choice"], ["auto"], "tool_choice"),
    ("/v1/responses", "translated", ["input", 1, "role"], ["user"], "input.1.role"),
    ("/v1/responses", "same", ["input", 1, "content", 0, "text"], {"a": 1}, "input.1.content.0.text"),
    ("/v1/responses", "cascade", ["input", 3, "arguments"], 5, "input.3.arguments"),
    ("/v1/responses", "translated", ["tools", 1, "tools"], True, "tools.1.tools"),
    ("/v1/messages", "translated", ["system", 0, "cache_control", "type"], 5, "system.0.cache_control.type"),
    ("/v1/messages", "cascade", ["messages", 1, "content", 2, "input"], "Paris", "messages.1.content.2.input"),
]


@pytest.mark.parametrize(("path", "kind", "where", "value", "field"), REGRESSIONS)
def test_type_confused_field_is_a_400_naming_it(http: httpx.Client,
                                                fuzz_proxy: tuple[BackgroundServer, BackgroundServer], path: str,
                                                kind: str, where: list[str | int], value: Any, field: str) -> None:
    model = MODELS[kind][0 if path.startswith("/v1/messages") else 1]
    response = check(http, fuzz_proxy[1], path, replaced(BODIES[path](model)[0], tuple(where), value))
    assert response.status_code == 400, response.text
    error = assert_dialect_error(path, response)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{field}:"), error["message"]
    if not path.startswith("/v1/messages"):
        assert error["param"] == field
