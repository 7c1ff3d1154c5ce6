"""Pure routing decisions: rule matching, routes, acceptance, request adaptation for the draft."""

from __future__ import annotations

import pytest

from router.policy.capabilities import NotServableByDraft, adapt_betas, adapt_request, capabilities_of
from router.policy.rules import Control, accept_draft, decide_route, find_rule, is_background_request
from router.settings import CascadeRule

RULE = CascadeRule(request_model="claude-opus-4-8", name="code", draft_model="claude-haiku-4-5",
                   verifier_model="claude-opus-4-8", quality_threshold=0.7)


def test_rule_matching_by_model_and_by_cascade_name() -> None:
    assert find_rule([RULE], "claude-opus-4-8") is RULE
    assert find_rule([RULE], "cascade/code") is RULE
    assert find_rule([RULE], "claude-sonnet-5") is None
    assert RULE.strong_model == "claude-opus-4-8"


def test_routes() -> None:
    assert decide_route([RULE], "claude-sonnet-5", {}, {}).route == "pass_through"
    forced = decide_route([RULE], "cascade/code", {}, {"x-cascadeflow-force": "strong"})
    assert (forced.route, forced.rule, forced.control.force) == ("strong", RULE, "strong")
    assert decide_route([RULE], "claude-opus-4-8", {"tools": [{"name": "x"}]}, {}).route == "draft"
    title = {"tools": [], "output_config": {"format": {"type": "json_schema", "schema": {}}}}
    assert is_background_request(title, {"user-agent": "claude-cli/2.1.197 (external, cli)"})
    assert not is_background_request(title, {"user-agent": "Anthropic/Python 2.14.0"})
    assert decide_route([RULE], "claude-opus-4-8", title, {"user-agent": "claude-cli/2"}).route == "strong"


def test_control_headers_parse() -> None:
    assert Control.from_headers({"x-cascadeflow-force": "Strong"}).force == "strong"
    assert Control.from_headers({"x-cascadeflow-force": "bogus"}).force is None
    assert Control.from_headers({"x-cascadeflow-cache": "off"}).no_cache


@pytest.mark.parametrize(
    ("confidence", "hard_fail", "control", "expected"),
    [(0.8, None, Control(), True), (0.69, None, Control(), False), (0.99, "tool_calls: bad", Control(), False),
     (0.1, "truncation", Control(force="draft"), True)],
)
def test_accept_draft(confidence: float, hard_fail: str | None, control: Control, expected: bool) -> None:
    assert accept_draft(confidence, hard_fail, 0.7, control) is expected


def test_capabilities_table() -> None:
    assert capabilities_of("claude-opus-4-8").adaptive_thinking
    assert not capabilities_of("claude-haiku-4-5-20251001").adaptive_thinking
    assert capabilities_of("groq/llama-3.1-8b-instant").max_output_tokens == 8_192
    assert capabilities_of("something-new").context_tokens == 32_000


def test_adapt_request_for_a_smaller_model() -> None:
    request = {"model": "claude-opus-4-8", "max_tokens": 64000, "thinking": {"type": "adaptive"},
               "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {}}},
               "messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                                              {"type": "text", "text": "a"}]}]}
    adapted = adapt_request(request, "claude-3-5-haiku-latest")
    assert adapted["model"] == "claude-3-5-haiku-latest" and adapted["max_tokens"] == 8_192
    assert "thinking" not in adapted
    assert adapted["output_config"] == {"format": {"type": "json_schema", "schema": {}}}
    assert adapted["messages"][0]["content"] == [{"type": "text", "text": "a"}]
    assert request["max_tokens"] == 64000 and "thinking" in request, "the original is not changed"


def test_adapt_request_refuses_a_context_too_long() -> None:
    request = {"model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": "word " * 40_000}]}
    with pytest.raises(NotServableByDraft):
        adapt_request(request, "mixtral-8x7b-instruct")


def test_adapt_betas() -> None:
    betas = "claude-code-20250219,context-1m-2025-08-07,effort-2025-11-24,interleaved-thinking-2025-05-14"
    assert adapt_betas(betas, "claude-haiku-4-5") == "claude-code-20250219,interleaved-thinking-2025-05-14"
    assert adapt_betas(betas, "claude-sonnet-5") == betas
