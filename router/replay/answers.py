"""Value types of the replay upstream: what an upstream answers, or how it fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

UpstreamDialect = Literal["anthropic", "openai_chat", "openai_responses"]


@dataclass(frozen=True)
class ToolCall:
    """One tool call of an answer."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """A complete answer, rendered later in whichever dialect was asked."""

    text: str = ""
    thinking: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    stop: Literal["end", "max_tokens", "tool_use"] = "end"
    input_tokens: int = 10
    output_tokens: int = 5
    cached_input_tokens: int = 0
    logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Fault:
    """An injected failure, possibly followed by a normal answer (delay, broken stream)."""

    status: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    break_stream_after: int | None = None
    error_event_after: int | None = None
    answer: Answer | None = None


@dataclass(frozen=True)
class UpstreamRequest:
    """What the upstream received."""

    dialect: UpstreamDialect
    model: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""
    query: str = ""


class AnswerSource(Protocol):
    """Decides the answer to a request."""

    async def answer(self, request: UpstreamRequest) -> Answer | Fault: ...
