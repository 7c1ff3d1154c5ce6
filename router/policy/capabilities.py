"""What each model accepts, and how a request written for a strong model is adapted for a draft model."""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
from dataclasses import dataclass

from router.model_settings import LogprobSupport, ModelInfoTable, find_model_info
from router.protocol.tokens import estimate_input_tokens
from router.types import JSONObject


@dataclass(frozen=True)
class ModelCapabilities:
    """Limits and features of one model family."""

    context_tokens: int
    max_output_tokens: int
    thinking: bool = False
    adaptive_thinking: bool = False
    effort: bool = False
    context_1m: bool = False


CAPABILITY_TABLE: tuple[tuple[str, ModelCapabilities], ...] = (
    ("claude-opus-4-[5-9]*", ModelCapabilities(200_000, 64_000, True, True, True, True)),
    ("claude-opus-4*", ModelCapabilities(200_000, 32_000, True)),
    ("claude-sonnet-5*", ModelCapabilities(200_000, 64_000, True, True, True, True)),
    ("claude-sonnet-4*", ModelCapabilities(200_000, 64_000, True, False, False, True)),
    ("claude-haiku-4*", ModelCapabilities(200_000, 64_000, True)),
    ("claude-3-7-sonnet*", ModelCapabilities(200_000, 64_000, True)),
    ("claude-3-5-haiku*", ModelCapabilities(200_000, 8_192)),
    ("claude-*", ModelCapabilities(200_000, 8_192)),
    ("gpt-4.1*", ModelCapabilities(1_000_000, 32_768)),
    ("gpt-4o*", ModelCapabilities(128_000, 16_384)),
    ("gpt-5*", ModelCapabilities(400_000, 128_000)),
    ("o[0-9]*", ModelCapabilities(200_000, 100_000)),
    ("*llama-3*", ModelCapabilities(128_000, 8_192)),
    ("*mixtral*", ModelCapabilities(32_000, 4_096)),
)
"""First match wins; unknown models get DEFAULT_CAPABILITIES. A configured `model_info` comes first."""

DEFAULT_CAPABILITIES = ModelCapabilities(32_000, 4_096)
_UNCONFIGURED_LOGPROBS = LogprobSupport()
_CONTEXT_BETA = "context-1m-"
_EFFORT_BETA = "effort-"
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})


class NotServableByDraft(Exception):
    """The request cannot be served by the draft model (context too long); go straight to the strong model."""


def builtin_capabilities(model: str) -> ModelCapabilities:
    """The built-in capabilities of a model name (a `provider/` prefix is ignored)."""
    name = model.rsplit("/", 1)[-1].lower()
    for pattern, capabilities in CAPABILITY_TABLE:
        if fnmatch.fnmatchcase(name, pattern):
            return capabilities
    return DEFAULT_CAPABILITIES


def capabilities_of(model: str, configured: ModelInfoTable | None = None) -> ModelCapabilities:
    """The capabilities of a model name as the provider knows it: the configured `model_info` limits first
    (exact name, then glob), the built-in table for what they leave out. The output limit never exceeds the
    context window."""
    capabilities = builtin_capabilities(model)
    info = find_model_info(model, configured)
    if info is None or (info.context_window is None and info.max_output_tokens is None):
        return capabilities
    context = info.context_window or capabilities.context_tokens
    output = min(info.max_output_tokens or capabilities.max_output_tokens, context)
    return dataclasses.replace(capabilities, context_tokens=context, max_output_tokens=output)


def has_tools(request: JSONObject) -> bool:
    """Whether a request (hub or Chat Completions body) offers the model tools (or legacy `functions`)."""
    return bool(request.get("tools")) or bool(request.get("functions"))


def logprobs_wanted(model: str, configured: ModelInfoTable | None, *, tools: bool, stream: bool,
                    provider_supports: bool) -> bool:
    """Whether to ask a model for token log-probs in this situation: as its configured `model_info` says, else
    (unknown models) as its provider's `supports_logprobs` says, but never on a request with tools."""
    info = find_model_info(model, configured)
    support = info.logprobs if info is not None else _UNCONFIGURED_LOGPROBS
    supported = provider_supports if support.supported is None else support.supported
    return supported and (support.with_tools or not tools) and (support.with_stream or not stream)


def _strip_thinking_history(messages: list[JSONObject]) -> list[JSONObject]:
    """Drop thinking blocks from earlier turns: their signatures belong to another model."""
    cleaned = []
    for message in messages:
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, list):
            kept = [block for block in content
                    if not (isinstance(block, dict) and block.get("type") in _THINKING_BLOCKS)]
            message = {**message, "content": kept or [{"type": "text", "text": ""}]}
        cleaned.append(message)
    return cleaned


def adapt_request(hub_request: JSONObject, model: str, configured: ModelInfoTable | None = None) -> JSONObject:
    """A copy of an Anthropic-format request that the draft model accepts (its limits: `capabilities_of`);
    raises NotServableByDraft."""
    capabilities = capabilities_of(model, configured)
    if estimate_input_tokens(hub_request) > capabilities.context_tokens * 0.9:
        raise NotServableByDraft(f"the request is too long for {model}")
    adapted = copy.copy(hub_request)
    adapted["model"] = model
    max_tokens = adapted.get("max_tokens")
    if isinstance(max_tokens, int):
        adapted["max_tokens"] = min(max_tokens, capabilities.max_output_tokens)
    adapted.pop("thinking", None)
    messages = adapted.get("messages")
    if isinstance(messages, list):
        adapted["messages"] = _strip_thinking_history(messages)
    output_config = adapted.get("output_config")
    if isinstance(output_config, dict) and not capabilities.effort:
        remaining = {key: value for key, value in output_config.items() if key != "effort"}
        if remaining:
            adapted["output_config"] = remaining
        else:
            adapted.pop("output_config")
    return adapted


def adapt_betas(beta_header: str | None, model: str, configured: ModelInfoTable | None = None) -> str | None:
    """The `anthropic-beta` list without the betas the draft model rejects."""
    if not beta_header:
        return beta_header
    capabilities = capabilities_of(model, configured)
    kept = []
    for beta in (value.strip() for value in beta_header.split(",")):
        if beta.startswith(_CONTEXT_BETA) and not capabilities.context_1m:
            continue
        if beta.startswith(_EFFORT_BETA) and not capabilities.effort:
            continue
        if beta:
            kept.append(beta)
    return ",".join(kept)
