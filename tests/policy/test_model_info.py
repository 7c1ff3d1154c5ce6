"""Configured model info (`model_info`): validation, lookup, limits before the built-in table, and log-probs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from router.errors import ConfigError
from router.model_settings import ModelInfo, find_model_info
from router.policy.capabilities import (
    DEFAULT_CAPABILITIES,
    NotServableByDraft,
    adapt_request,
    capabilities_of,
    has_tools,
    logprobs_wanted,
)
from router.settings import Settings, load_settings

QWEN = "qwen2.5-coder-0.5b"
TABLE = {
    QWEN: ModelInfo(context_window=8_192, max_output_tokens=2_048),
    "qwen2.5-*": ModelInfo(context_window=65_536),
    "*": ModelInfo(max_output_tokens=1_000),
    "claude-haiku-4-5": ModelInfo(context_window=100_000),
}


def info(**fields: Any) -> dict[str, ModelInfo]:
    return {QWEN: ModelInfo.model_validate(fields)}


def test_lookup_is_exact_first_then_the_first_matching_glob() -> None:
    assert find_model_info(QWEN, TABLE) is TABLE[QWEN]
    assert find_model_info("qwen2.5-7b", TABLE) is TABLE["qwen2.5-*"]
    assert find_model_info("mistral-small", TABLE) is TABLE["*"]
    assert find_model_info("Qwen2.5-7b", {"qwen2.5-*": TABLE["qwen2.5-*"]}) is None, "case-sensitive"
    assert find_model_info(QWEN, {}) is None and find_model_info(QWEN, None) is None


def test_configured_limits_come_before_the_built_in_table() -> None:
    assert (capabilities_of(QWEN, TABLE).context_tokens, capabilities_of(QWEN, TABLE).max_output_tokens) == (
        8_192, 2_048)
    glob = capabilities_of("qwen2.5-7b", TABLE)
    assert (glob.context_tokens, glob.max_output_tokens) == (65_536, DEFAULT_CAPABILITIES.max_output_tokens)
    haiku = capabilities_of("claude-haiku-4-5", TABLE)
    assert (haiku.context_tokens, haiku.max_output_tokens, haiku.thinking) == (100_000, 64_000, True), \
        "fields left out keep the built-in values"
    assert capabilities_of(QWEN) == DEFAULT_CAPABILITIES, "no configured table: the built-in one alone"
    assert capabilities_of("gpt-4o", {QWEN: TABLE[QWEN]}) == capabilities_of("gpt-4o")


def test_a_configured_output_limit_never_exceeds_a_smaller_built_in_context() -> None:
    assert capabilities_of("mixtral-8x7b", {"mixtral-8x7b": ModelInfo(max_output_tokens=50_000)}
                           ).max_output_tokens == 32_000


def test_the_draft_is_adapted_to_the_configured_limits() -> None:
    request = {"model": "claude-opus-4-8", "max_tokens": 32_000,
               "messages": [{"role": "user", "content": "word " * 2_000}]}
    adapted = adapt_request(request, QWEN, TABLE)
    assert adapted["model"] == QWEN and adapted["max_tokens"] == 2_048
    with pytest.raises(NotServableByDraft):
        adapt_request({**request, "messages": [{"role": "user", "content": "word " * 40_000}]}, QWEN, TABLE)
    assert adapt_request({**request, "messages": [{"role": "user", "content": "word " * 20_000}]},
                         "qwen2.5-7b", TABLE)["max_tokens"] == DEFAULT_CAPABILITIES.max_output_tokens


def test_tools_are_seen_in_both_request_shapes() -> None:
    assert has_tools({"tools": [{"name": "x"}]}) and has_tools({"functions": [{"name": "x"}]})
    assert not has_tools({"tools": []}) and not has_tools({})


@pytest.mark.parametrize(("configured", "tools", "provider", "expected"), [
    pytest.param(None, False, True, True, id="unknown-model-follows-the-provider"),
    pytest.param(None, False, False, False, id="unknown-model-provider-without-logprobs"),
    pytest.param(None, True, True, False, id="unknown-model-never-with-tools-and-stream"),
    pytest.param({"with_tools": False}, True, True, False, id="with-tools-false"),
    pytest.param({"with_tools": True}, True, True, True, id="with-tools-true"),
    pytest.param({"supported": True}, False, False, True, id="supported-beats-the-provider"),
    pytest.param({"supported": False}, False, True, False, id="unsupported-beats-the-provider"),
    pytest.param({"supported": True, "with_tools": True}, True, False, True, id="supported-with-tools"),
    pytest.param({"supported": True, "with_stream": False}, False, True, False, id="not-in-a-stream"),
])
def test_logprobs_only_where_the_model_info_says_they_work(configured: dict[str, Any] | None, tools: bool,
                                                            provider: bool, expected: bool) -> None:
    table = info() if configured is None else info(logprobs=configured)
    assert logprobs_wanted(QWEN, table, tools=tools, stream=True, provider_supports=provider) is expected
    assert logprobs_wanted("other-model", table, tools=tools, stream=True,
                           provider_supports=provider) is (provider and not tools)


def test_without_tools_and_stream_the_flags_do_not_apply() -> None:
    table = info(logprobs={"supported": True, "with_tools": False, "with_stream": False})
    assert logprobs_wanted(QWEN, table, tools=False, stream=False, provider_supports=False)


def test_the_section_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model_info:\n"
                    f"  {QWEN}:\n"
                    "    context_window: 32768\n    max_output_tokens: 8192\n"
                    "    logprobs: {supported: true, with_tools: false}\n"
                    "    prices: {input: 0.02, output: 0.06}\n"
                    "  'llama-*': {prices: {input: 0.1, output: 0.2, cache_read: 0.01, cache_write: 0.125}}\n")
    settings = load_settings(path, environ={})
    qwen = settings.model_info[QWEN]
    assert (qwen.context_window, qwen.max_output_tokens, qwen.logprobs.supported, qwen.logprobs.with_tools,
            qwen.logprobs.with_stream) == (32_768, 8_192, True, False, True)
    assert qwen.prices is not None and (qwen.prices.input, qwen.prices.output, qwen.prices.cache_read) == (
        0.02, 0.06, None)
    assert list(settings.model_info) == [QWEN, "llama-*"], "config order is kept (the glob order)"
    assert Settings().model_info == {}


@pytest.mark.parametrize(("entry", "expected"), [
    ("{context_window: 0}", r"model_info\.m\.context_window: Input should be greater than 0"),
    ("{max_output_tokens: -5}", r"model_info\.m\.max_output_tokens: Input should be greater than 0"),
    ("{context_window: 4096, max_output_tokens: 8192}",
     r"model_info\.m\.max_output_tokens: must not exceed context_window \(4096\)"),
    ("{prices: {input: -1, output: 1}}", r"model_info\.m\.prices\.input: Input should be greater than or equal"),
    ("{prices: {input: 1, output: .inf}}", r"model_info\.m\.prices\.output: Input should be a finite number"),
    ("{prices: {input: 1, output: 1, cache_read: .nan}}", r"model_info\.m\.prices\.cache_read: .*finite"),
    ("{prices: {input: 1}}", r"model_info\.m\.prices\.output: Field required"),
    ("{logprobs: {with_tool: true}}", r"model_info\.m\.logprobs\.with_tool: Extra inputs are not permitted"),
    ("{logprobs: {supported: maybe}}", r"model_info\.m\.logprobs\.supported: Input should be a valid boolean"),
    ("{context: 4096}", r"model_info\.m\.context: Extra inputs are not permitted"),
])
def test_a_bad_value_names_its_key_path(tmp_path: Path, entry: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"model_info:\n  m: {entry}\n")
    with pytest.raises(ConfigError, match=expected):
        load_settings(path, environ={})
