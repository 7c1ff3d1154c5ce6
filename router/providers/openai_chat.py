"""The OpenAI Chat Completions wire (OpenAI, Groq, vLLM, Ollama, llama.cpp): built from and decoded to the hub."""

from __future__ import annotations

import re

from router.costs import TokenUsage
from router.protocol.anthropic_stream import AnthropicStreamAccumulator
from router.protocol.chat_request import anthropic_request_to_chat
from router.protocol.chat_response import chat_response_to_anthropic
from router.protocol.chat_stream import ChatToAnthropicStream
from router.protocol.sse import SSEEvent
from router.providers.wire import EARLY_END, Completion, MalformedAnswer, StreamMode, decode_object
from router.types import Dialect, Endpoint, JSONObject

_FINISHED = re.compile(r'"finish_reason": ?"')


def _logprobs(chunk: JSONObject) -> list[float]:
    values: list[float] = []
    for choice in chunk.get("choices") or []:
        content = ((choice if isinstance(choice, dict) else {}).get("logprobs") or {}).get("content") or []
        values.extend(float(item["logprob"]) for item in content
                      if isinstance(item, dict) and isinstance(item.get("logprob"), int | float))
    return values


class ChatStreamDecoder:
    """Chat chunks translated into hub events once, accumulated into the complete message."""

    def __init__(self, mode: StreamMode) -> None:
        self._mode = mode
        self._converter = ChatToAnthropicStream(mode.model)
        self._accumulator = AnthropicStreamAccumulator()
        self._logprobs: list[float] = []
        self._usage: TokenUsage | None = None
        self._finished = self._done = False
        self._error: str | None = None

    def feed(self, event: SSEEvent) -> list[JSONObject]:
        """Decode one chunk or `[DONE]` (in observe mode, only chunks with usage, an end or an error)."""
        data = event.data
        if not data or self._done:
            return []
        if data.strip() == "[DONE]":
            self._done = self._finished = True
            return self.finish()
        full = self._mode.events or self._mode.message or self._mode.logprobs
        if not full and '"usage"' not in data and '"error"' not in data and not _FINISHED.search(data):
            return []
        chunk = decode_object(data, "a chat stream chunk")
        if isinstance(chunk.get("usage"), dict):
            self._usage = TokenUsage.from_openai_chat(chunk["usage"])
        if chunk.get("error") is not None and not chunk.get("choices"):
            error = chunk["error"]
            self._error = str(error.get("message") if isinstance(error, dict) else error) or "upstream error"
        if any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or []):
            self._finished = True
        if self._mode.logprobs:
            self._logprobs.extend(_logprobs(chunk))
        if not full:
            return []
        return self._pass(self._converter.feed(chunk))

    def finish(self) -> list[JSONObject]:
        """Close the message when the provider sent a finish reason (with or without `[DONE]`)."""
        if self._error is not None or not self._finished:
            return []
        return self._pass(self._converter.finish()) if (self._mode.events or self._mode.message) else []

    def _pass(self, events: list[JSONObject]) -> list[JSONObject]:
        for event in events:
            self._accumulator.feed(event)
        return events if self._mode.events else []

    def completion(self) -> Completion:
        """The message rebuilt from the chunks."""
        logprobs = tuple(self._logprobs) if self._logprobs else None
        if self._error is not None:
            return Completion(None, self._usage, logprobs, self._error)
        if not self._finished:
            return Completion(None, self._usage, logprobs, EARLY_END)
        if not (self._mode.events or self._mode.message):
            return Completion(None, self._usage, logprobs)
        message = self._accumulator.message()
        usage = self._usage or TokenUsage.from_anthropic(message.get("usage") or {})
        return Completion(message, usage, logprobs)


class ChatWire:
    """OpenAI Chat Completions (`/v1/chat/completions`)."""

    dialect = Dialect.OPENAI_CHAT

    def path(self, endpoint: Endpoint, query: str) -> str:
        """One path: the client's query string is not passed on."""
        return "/v1/chat/completions"

    def build(self, hub_request: JSONObject, model: str) -> JSONObject:
        """A chat request translated from the hub request (streams ask for usage)."""
        return anthropic_request_to_chat({**hub_request, "model": model})

    def decode(self, data: object) -> Completion:
        """A chat.completion object."""
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
            raise MalformedAnswer("the chat answer has no choices")
        usage = data.get("usage")
        message = chat_response_to_anthropic(data, str(data.get("model") or ""))
        return Completion(message, TokenUsage.from_openai_chat(usage) if isinstance(usage, dict) else None)

    def decoder(self, mode: StreamMode) -> ChatStreamDecoder:
        """A decoder for one chat stream."""
        return ChatStreamDecoder(mode)
