"""Stateful stream translators between Anthropic stream events and chat.completion.chunk objects."""

from __future__ import annotations

import time
from typing import Any

from router.protocol.chat_response import (
    anthropic_error_to_chat,
    anthropic_usage_to_chat,
    as_object,
    chat_error_to_anthropic,
    chat_id_from_message,
    chat_usage_to_anthropic,
    finish_to_stop_reason,
    message_id_from_chat,
    stop_to_finish_reason,
)
from router.types import JSONObject


class AnthropicToChatStream:
    """Anthropic stream events in, chat.completion.chunk dicts out."""

    def __init__(self, model: str, *, include_usage: bool = False, created: int | None = None) -> None:
        self._model = model
        self._include_usage = include_usage
        self._created = int(time.time()) if created is None else created
        self._id: str | None = None
        self._started = False
        self._finished = False
        self._tool_indices: dict[int, int] = {}
        self._usage: JSONObject = {}

    def _chunk(self, delta: JSONObject, finish_reason: str | None = None) -> JSONObject:
        """A chunk with one choice."""
        return {"id": self._chat_id(), "object": "chat.completion.chunk", "created": self._created,
                "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def _chat_id(self) -> str:
        """The stream's chunk id, fixed on first use."""
        if self._id is None:
            self._id = chat_id_from_message(None)
        return self._id

    def _start(self) -> list[JSONObject]:
        """The first chunk (role and empty content) if not sent yet."""
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, event: JSONObject) -> list[JSONObject]:
        """Chunks for one Anthropic stream event; an `error` event gives an OpenAI error payload."""
        if self._finished:
            return []
        kind = event.get("type")
        if kind == "error":
            self._finished = True
            return [anthropic_error_to_chat(event)]
        if kind == "message_start":
            message = as_object(event.get("message"))
            if self._id is None:
                self._id = chat_id_from_message(message.get("id"))
            self._update_usage(message.get("usage"))
            return self._start()
        out = self._start()
        if kind == "content_block_start":
            out.extend(self._block_start(event))
        elif kind == "content_block_delta":
            out.extend(self._block_delta(event))
        elif kind == "message_delta":
            delta = as_object(event.get("delta"))
            self._update_usage(event.get("usage"))
            out.extend(self._close(stop_to_finish_reason(delta.get("stop_reason"))))
        elif kind == "message_stop":
            out.extend(self.finish())
        return out

    def finish(self) -> list[JSONObject]:
        """Closing chunks (finish reason, then usage if asked for) for a stream that has not finished."""
        if self._finished:
            return []
        return [*self._start(), *self._close("tool_calls" if self._tool_indices else "stop")]

    def _close(self, finish_reason: str) -> list[JSONObject]:
        """The finish chunk and the optional usage chunk."""
        self._finished = True
        out = [self._chunk({}, finish_reason)]
        if self._include_usage:
            out.append({"id": self._chat_id(), "object": "chat.completion.chunk", "created": self._created,
                        "model": self._model, "choices": [], "usage": anthropic_usage_to_chat(self._usage)})
        return out

    def _update_usage(self, usage: Any) -> None:
        """Keep the latest cumulative counts."""
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if isinstance(v, int)})

    def _block_start(self, event: JSONObject) -> list[JSONObject]:
        """A tool-call header chunk for a tool_use block, initial text for other blocks."""
        block = as_object(event.get("content_block"))
        kind = block.get("type")
        if kind == "tool_use":
            tool_index = len(self._tool_indices)
            self._tool_indices[int(event.get("index") or 0)] = tool_index
            function = {"name": str(block.get("name") or ""), "arguments": ""}
            call_id = str(block.get("id") or "")
            call = {"index": tool_index, "id": call_id, "type": "function", "function": function}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": str(block["text"])})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": str(block["thinking"])})]
        return []

    def _block_delta(self, event: JSONObject) -> list[JSONObject]:
        """The chunk for one content delta (signatures and citations have no chat equivalent)."""
        delta = as_object(event.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": str(delta["text"])})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": str(delta["thinking"])})]
        tool_index = self._tool_indices.get(int(event.get("index") or 0))
        if kind == "input_json_delta" and delta.get("partial_json") and tool_index is not None:
            call = {"index": tool_index, "function": {"arguments": str(delta["partial_json"])}}
            return [self._chunk({"tool_calls": [call]})]
        return []


class ChatToAnthropicStream:
    """chat.completion.chunk dicts in, Anthropic stream events out; message_delta/stop come from finish()."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._msg_id: str | None = None
        self._next_index = 0
        self._open: str | None = None
        self._seen_tools: set[int] = set()
        self._tool: tuple[int, str] | None = None
        self._finish_reason: str | None = None
        self._usage: Any = None
        self._done = False

    def feed(self, chunk: JSONObject) -> list[JSONObject]:
        """Anthropic events for one chat chunk (an `{"error": ...}` payload becomes an `error` event)."""
        if self._done:
            return []
        if chunk.get("error") is not None and not chunk.get("choices"):
            self._done = True
            return [chat_error_to_anthropic(chunk)]
        out = self._start(chunk.get("id"))
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = as_object(choice.get("delta"))
            out.extend(self._delta(delta))
            if choice.get("finish_reason"):
                self._finish_reason = str(choice["finish_reason"])
        return out

    def finish(self) -> list[JSONObject]:
        """Close the open block and end the message with stop reason and usage (once)."""
        if self._done:
            return []
        out = self._start(None)
        out.extend(self._close_block())
        self._done = True
        usage = chat_usage_to_anthropic(self._usage)
        if self._usage is None:
            usage = {"output_tokens": 0}
        stop_reason = finish_to_stop_reason(self._finish_reason, bool(self._seen_tools))
        out.append({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": usage})
        out.append({"type": "message_stop"})
        return out

    def _start(self, chat_id: Any) -> list[JSONObject]:
        """The message_start event if not sent yet."""
        if self._msg_id is not None:
            return []
        self._msg_id = message_id_from_chat(chat_id)
        usage = {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                 "output_tokens": 0}
        message: JSONObject = {"id": self._msg_id, "type": "message", "role": "assistant",
                               "model": self._model, "content": [], "stop_reason": None,
                               "stop_sequence": None, "usage": usage}
        return [{"type": "message_start", "message": message}]

    def _delta(self, delta: JSONObject) -> list[JSONObject]:
        """Events for one choice delta: reasoning, then text, then tool calls."""
        out: list[JSONObject] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.extend(self._ensure_block("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
            out.append(self._block_delta({"type": "thinking_delta", "thinking": reasoning}))
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.extend(self._ensure_block("text", {"type": "text", "text": ""}))
                out.append(self._block_delta({"type": "text_delta", "text": text}))
        calls = delta.get("tool_calls")
        if isinstance(delta.get("function_call"), dict):
            calls = [{"index": 0, "function": delta["function_call"]}]
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                out.extend(self._tool_call(call))
        return out

    def _tool_call(self, call: JSONObject) -> list[JSONObject]:
        """Events for one tool-call delta; a new index (or a new id) starts a new tool_use block."""
        index = call.get("index", 0)
        index = index if isinstance(index, int) else 0
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        function = as_object(call.get("function"))
        out: list[JSONObject] = []
        tool = self._tool if self._open == "tool" else None
        if tool is None or tool[0] != index or call_id not in (None, tool[1]):
            if call_id is None and index in self._seen_tools:
                return []
            self._seen_tools.add(index)
            call_id = call_id or f"toolu_{(self._msg_id or 'msg_')[4:]}_{index}"
            self._tool = (index, call_id)
            name = str(function.get("name") or "")
            block: JSONObject = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            out.extend(self._ensure_block("tool", block, force=True))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(self._block_delta({"type": "input_json_delta", "partial_json": arguments}))
        return out

    def _ensure_block(self, kind: str, block: JSONObject, force: bool = False) -> list[JSONObject]:
        """Open a block of this kind unless it is the open one (or `force`), closing any other."""
        if self._open == kind and not force:
            return []
        out = self._close_block()
        self._open = kind
        out.append({"type": "content_block_start", "index": self._next_index, "content_block": block})
        return out

    def _block_delta(self, delta: JSONObject) -> JSONObject:
        """A content_block_delta for the open block."""
        return {"type": "content_block_delta", "index": self._next_index, "delta": delta}

    def _close_block(self) -> list[JSONObject]:
        """Stop the open block, if any (a thinking block gets its empty signature first)."""
        if self._open is None:
            return []
        out: list[JSONObject] = []
        if self._open == "thinking":
            out.append(self._block_delta({"type": "signature_delta", "signature": ""}))
        out.append({"type": "content_block_stop", "index": self._next_index})
        self._open = None
        self._next_index += 1
        return out
