"""What each model accepts, and how a request written for a strong model is adapted for a draft model."""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass

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
"""First match wins; unknown models get DEFAULT_CAPABILITIES."""

DEFAULT_CAPABILITIES = ModelCapabilities(32_000, 4_096)
_CONTEXT_BETA = "context-1m-"
_EFFORT_BETA = "effort-"
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})


class NotServableByDraft(Exception):
    """The request cannot be served by the draft model (context too long); go straight to the strong model."""


def capabilities_of(model: str) -> ModelCapabilities:
    """The capabilities of a model name (a `provider/` prefix is ignored)."""
    name = model.rsplit("/", 1)[-1].lower()
    for pattern, capabilities in CAPABILITY_TABLE:
        if fnmatch.fnmatchcase(name, pattern):
            return capabilities
    return DEFAULT_CAPABILITIES


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


def adapt_request(hub_request: JSONObject, model: str) -> JSONObject:
    """A copy of an Anthropic-format request that the draft model accepts; raises NotServableByDraft."""
    capabilities = capabilities_of(model)
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


def adapt_betas(beta_header: str | None, model: str) -> str | None:
    """The `anthropic-beta` list without the betas the draft model rejects."""
    if not beta_header:
        return beta_header
    capabilities = capabilities_of(model)
    kept = []
    for beta in (value.strip() for value in beta_header.split(",")):
        if beta.startswith(_CONTEXT_BETA) and not capabilities.context_1m:
            continue
        if beta.startswith(_EFFORT_BETA) and not capabilities.effort:
            continue
        if beta:
            kept.append(beta)
    return ",".join(kept)
