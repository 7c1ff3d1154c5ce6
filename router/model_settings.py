"""The `model_info` settings section: what the built-in tables do not know about a model, given in the config.

Keys are model names as the provider knows them (the upstream model after routing, e.g. `qwen2.5-coder-0.5b`)
or glob patterns (`qwen2.5-*`); a name is looked up exactly first, then against the patterns in config order
(case-sensitive). Each field left out keeps the built-in value (or the default for unknown models).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_GLOB_CHARACTERS = frozenset("*?[")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LogprobSupport(_Strict):
    """Whether the model's server returns token log-probabilities, and in which situations.

    Drafts ask for them (as a confidence signal) only when they work in the request's situation; drafts are
    always fetched as streams, so `with_stream: false` means never for a draft. The defaults are those of a
    model with no configured info: the provider's `supports_logprobs`, never on a request with tools.
    """

    supported: bool | None = None
    """Log-probs work at all (None: the provider's `supports_logprobs`)."""
    with_tools: bool = False
    """They also work on streamed requests that carry tools (llama.cpp refuses "logprobs with tools + stream")."""
    with_stream: bool = True
    """They also work on streamed requests."""


class ModelPrices(_Strict):
    """USD per million tokens; these win over genai-prices' table. Cache prices default to `input`."""

    input: float = Field(ge=0)
    """Uncached input (prompt) tokens."""
    output: float = Field(ge=0)
    """Output (completion) tokens."""
    cache_read: float | None = Field(None, ge=0)
    """Input tokens read from the prompt cache (None: `input`)."""
    cache_write: float | None = Field(None, ge=0)
    """Input tokens written to the prompt cache (None: `input`)."""


class ModelInfo(_Strict):
    """What one model (or every model of a glob pattern) accepts, whether it gives log-probs, and its prices."""

    context_window: int | None = Field(None, gt=0)
    """Tokens of input and output together (None: built-in, 32000 for unknown models); a request longer than
    90% of it is not sent to this model as a draft."""
    max_output_tokens: int | None = Field(None, gt=0)
    """The most tokens it may produce; a draft's `max_tokens` is capped to it (None: built-in, 4096 for
    unknown models). At most `context_window`."""
    logprobs: LogprobSupport = Field(default_factory=LogprobSupport)
    """When drafts ask this model for log-probs."""
    prices: ModelPrices | None = None
    """Its prices (None: genai-prices' bundled table, else 0 USD with a warning)."""

    @field_validator("max_output_tokens")
    @classmethod
    def _fits_the_context(cls, value: int | None, info: ValidationInfo) -> int | None:
        context = info.data.get("context_window")
        if value is not None and context is not None and value > context:
            raise ValueError(f"must not exceed context_window ({context})")
        return value


ModelInfoTable = Mapping[str, ModelInfo]
"""The `model_info` section: model name or glob pattern -> its info."""


def is_pattern(name: str) -> bool:
    """Whether a `model_info` key is a glob pattern rather than one model's name."""
    return not _GLOB_CHARACTERS.isdisjoint(name)


def find_model_info(model: str, table: ModelInfoTable | None) -> ModelInfo | None:
    """The configured info of a model name: an exact key first, then the first glob pattern matching it."""
    if not table:
        return None
    exact = table.get(model)
    if exact is not None:
        return exact
    return next((info for name, info in table.items() if is_pattern(name) and fnmatch.fnmatchcase(model, name)),
                None)
