"""A scripted upstream LLM server speaking the providers' wire formats, for tests, demos and benchmarks."""

from __future__ import annotations

from router.replay.answers import Answer, AnswerSource, Dialect, Fault, ToolCall, UpstreamRequest

__all__ = ["Answer", "AnswerSource", "Dialect", "Fault", "ToolCall", "UpstreamRequest"]
