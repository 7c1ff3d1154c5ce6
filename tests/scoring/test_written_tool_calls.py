"""A tool call a draft wrote as text (as small local models do) instead of making it: a failed tool call."""

from __future__ import annotations

import time
from typing import Any

import pytest

from router.scoring import measures
from tests.scoring.test_measures import ENV_TOOL, READ_TOOL, evidence


@pytest.mark.parametrize(
    ("text", "tools", "detail"),
    [
        ('{"name": "Read", "arguments": {"file_path": "/a"}}', [READ_TOOL], "a call of Read"),  # Qwen2.5-Coder-0.5B
        ('```json\n{\n  "name": "Read",\n  "arguments": {\n    "file_path": "/a"\n  }\n}\n```', [READ_TOOL],
         "a call of Read"),  # Qwen2.5-Coder-1.5B
        ('I will.\n<tool_call>\n{"name": "SetEnv", "arguments": {"vars": {"A": "1"}}}\n</tool_call>', [ENV_TOOL],
         "a call of SetEnv"),
        ('{"name": "Read", "arguments": {}}\n{"name": "Read", "parameters": {}}', [READ_TOOL], "2 calls of Read"),
    ],
)
def test_a_tool_call_written_as_text_is_a_hard_fail(text: str, tools: list[dict[str, Any]], detail: str) -> None:
    c = measures.tool_calls(evidence(text, tools=tools))
    assert c is not None and c.fatal and c.value == 0.0
    assert c.detail == f"{detail} written as text, not made"


@pytest.mark.parametrize(
    ("text", "tools"),
    [
        ('{"name": "Read", "arguments": {"file_path": "/a"}}', []),  # no tools offered: plain JSON
        ('{"name": "Write", "arguments": {"file_path": "/a"}}', [READ_TOOL]),  # not a tool of the request
        ('{"name": "Read", "size": 3}', [READ_TOOL]),  # JSON about a tool, not a call of it
        ('The Read tool takes {"name": "Read", "arguments": ...', [READ_TOOL]),  # not JSON
    ],
)
def test_json_that_calls_no_offered_tool_is_no_written_call(text: str, tools: list[dict[str, Any]]) -> None:
    assert measures.tool_calls(evidence(text, tools=tools)) is None


def test_text_that_only_looks_like_written_calls_is_read_quickly() -> None:
    started = time.perf_counter()
    for text in ['{"name": [' * 20_000, '{"name": "x"} ' * 20_000]:  # nested past the parser's depth; many
        assert measures.tool_calls(evidence(text, tools=[READ_TOOL])) is None
    assert time.perf_counter() - started < 1.0
