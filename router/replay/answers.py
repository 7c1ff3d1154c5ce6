"""Value types of the replay upstream: what a source decides to answer, and the request it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Dialect = Literal["anthropic", "openai_chat", "openai_responses"]
StopReason = Literal["end", "max_tokens", "tool_use"]


@dataclass(frozen=True)
class ToolCall:
    """One tool call of an answer; `id` is `toolu_…` (Anthropic) or `call_…` (OpenAI)."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """A model answer in no dialect; `input_tokens` counts every prompt token, cached ones included."""

    text: str = ""
    thinking: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    stop: StopReason = "end"
    input_tokens: int = 10
    output_tokens: int = 5
    cached_input_tokens: int = 0
    logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Fault:
    """A fault to inject; with no `status`, `answer` (or a default) is sent, possibly broken mid-stream."""

    status: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    break_stream_after: int | None = None
    error_event_after: int | None = None
    answer: Answer | None = None


@dataclass(frozen=True)
class UpstreamRequest:
    """A request as the upstream got it: dialect, model, parsed body, lower-cased headers, path, query."""

    dialect: Dialect
    model: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""
    query: str = ""


class AnswerSource(Protocol):
    """Decides what the upstream answers to a request."""

    async def answer(self, request: UpstreamRequest) -> Answer | Fault:
        """The answer (or fault) for this request."""
        ...
