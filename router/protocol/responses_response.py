"""An Anthropic message as an OpenAI Responses API response, complete or as a stream of Responses events."""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from router.protocol.anthropic_stream import AnthropicStreamAccumulator, encode_event
from router.protocol.responses_request import namespace_map
from router.types import JSONObject

_EARLY_END = "the upstream stream ended before the response was complete"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _next_id(preset: list[str], prefix: str) -> str:
    """The next item id: preset ones first (those a stream already sent, consumed), then fresh ones."""
    return preset.pop(0) if preset else _new_id(prefix)


def item_kind(block_type: Any) -> str | None:
    """The Responses output item an Anthropic block becomes (None: the block is dropped)."""
    kinds = {"text": "message", "thinking": "reasoning", "redacted_thinking": "reasoning",
             "tool_use": "function_call"}
    return kinds.get(block_type) if isinstance(block_type, str) else None


def _count(usage: JSONObject, key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(usage: Any) -> JSONObject:
    """Responses usage from Anthropic usage (input tokens include cache reads and writes)."""
    usage = usage if isinstance(usage, dict) else {}
    cached, written = _count(usage, "cache_read_input_tokens"), _count(usage, "cache_creation_input_tokens")
    input_tokens = _count(usage, "input_tokens") + cached + written
    output_tokens = _count(usage, "output_tokens")
    details = usage.get("output_tokens_details")
    reasoning = _count(details, "thinking_tokens") if isinstance(details, dict) else 0
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def _status(stop_reason: Any) -> tuple[str, JSONObject | None]:
    if stop_reason in ("max_tokens", "model_context_window_exceeded"):
        return "incomplete", {"reason": "max_output_tokens"}
    if stop_reason == "refusal":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _text_part(block: JSONObject) -> JSONObject:
    text = str(block.get("text") or "")
    annotations = [
        {"type": "url_citation", "url": citation["url"], "title": str(citation.get("title") or ""),
         "start_index": 0, "end_index": len(text)}
        for citation in block.get("citations") or []
        if isinstance(citation, dict) and isinstance(citation.get("url"), str)
    ]
    return {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}


def _reasoning_item(block: JSONObject, item_id: str) -> JSONObject:
    thinking = block.get("thinking")
    summary = [{"type": "summary_text", "text": thinking}] if isinstance(thinking, str) and thinking else []
    return {"type": "reasoning", "id": item_id, "summary": summary}


def _function_call(block: JSONObject, item_id: str, namespaces: dict[str, tuple[str, str]],
                   status: str) -> JSONObject:
    name = str(block.get("name") or "")
    tool_input = block.get("input")
    item: JSONObject = {"type": "function_call", "id": item_id, "call_id": str(block.get("id") or ""),
                        "name": name}
    if name in namespaces:
        item["namespace"], item["name"] = namespaces[name]
    arguments = json.dumps(tool_input if isinstance(tool_input, dict) else {}, ensure_ascii=False)
    return {**item, "arguments": arguments, "status": status}


def _message_item(item_id: str, status: str, parts: list[JSONObject]) -> JSONObject:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": parts}


def _output(content: Any, request: JSONObject, ids: list[str], status: str) -> list[JSONObject]:
    """Output items: consecutive text blocks share one message item; other blocks are dropped."""
    namespaces = namespace_map(request.get("tools"))
    output: list[JSONObject] = []
    message: JSONObject | None = None
    for block in content if isinstance(content, list) else []:
        kind = item_kind(block.get("type")) if isinstance(block, dict) else None
        if kind == "message":
            if message is None:
                message = _message_item(_next_id(ids, "msg"), "completed", [])
                output.append(message)
            message["content"].append(_text_part(block))
        elif kind == "reasoning":
            message = None
            output.append(_reasoning_item(block, _next_id(ids, "rs")))
        elif kind == "function_call":
            message = None
            output.append(_function_call(block, _next_id(ids, "fc"), namespaces, "completed"))
    if status == "incomplete" and output and output[-1]["type"] == "message":
        output[-1]["status"] = "incomplete"
    return output


def _number(value: Any, default: float | None) -> Any:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else default


def _echo(request: JSONObject) -> JSONObject:
    """The request settings that a response object repeats, with the API's defaults."""
    get = request.get
    reasoning, text, choice, truncation = get("reasoning"), get("text"), get("tool_choice"), get("truncation")
    reasoning = reasoning if isinstance(reasoning, dict) else {}
    has_format = isinstance(text, dict) and isinstance(text.get("format"), dict)
    return copy.deepcopy({
        "instructions": get("instructions") if isinstance(get("instructions"), str | list) else None,
        "max_output_tokens": get("max_output_tokens") if isinstance(get("max_output_tokens"), int) else None,
        "parallel_tool_calls": get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": "default",
        "store": get("store") is True,
        "temperature": _number(get("temperature"), 1.0),
        "text": text if has_format else {"format": {"type": "text"}},
        "tool_choice": choice if isinstance(choice, str | dict) else "auto",
        "tools": get("tools") if isinstance(get("tools"), list) else [],
        "top_p": _number(get("top_p"), 1.0),
        "truncation": truncation if truncation in ("auto", "disabled") else "disabled",
        "user": get("user") if isinstance(get("user"), str) else None,
        "metadata": get("metadata") if isinstance(get("metadata"), dict) else {},
    })


def _response(model: str, request: JSONObject, *, response_id: str, created_at: int, status: str,
              output: list[JSONObject], usage: JSONObject | None,
              incomplete_details: JSONObject | None = None, error: JSONObject | None = None) -> JSONObject:
    """A Responses `response` object, echoing the request's settings."""
    return {"id": response_id, "object": "response", "created_at": created_at, "status": status,
            "background": False, "error": error, "incomplete_details": incomplete_details, "model": model,
            "output": output, **_echo(request), "usage": usage}


def _final_response(message: JSONObject, model: str, request: JSONObject, response_id: str, created_at: int,
                    ids: list[str]) -> JSONObject:
    status, incomplete = _status(message.get("stop_reason"))
    output = _output(message.get("content"), request, ids, status)
    return _response(model, request, response_id=response_id, created_at=created_at, status=status,
                     output=output, usage=_usage(message.get("usage")), incomplete_details=incomplete)


def anthropic_response_to_responses(message: JSONObject, model: str, request: JSONObject) -> JSONObject:
    """A complete Anthropic message as a Responses API `response` object."""
    return _final_response(message, model, request, _new_id("resp"), int(time.time()), [])


@dataclass
class _Slot:
    """The output item (or message part) that one Anthropic content block streams into."""

    kind: str
    item_id: str
    output_index: int
    content_index: int = 0
    summary_open: bool = False
    closed: bool = False


@dataclass
class _OpenMessage:
    """The message item that text blocks are streaming into."""

    item_id: str
    output_index: int
    parts: list[JSONObject] = field(default_factory=list)


class AnthropicToResponsesStream:
    """Turns decoded Anthropic stream events into Responses stream events."""

    def __init__(self, model: str, request: JSONObject) -> None:
        self._model = model
        self._request = request
        self._accumulator = AnthropicStreamAccumulator()
        self._response_id = _new_id("resp")
        self._created_at = int(time.time())
        self._namespaces = namespace_map(request.get("tools"))
        self._sequence = 0
        self._started = False
        self._finished = False
        self._slots: dict[int, _Slot] = {}
        self._message: _OpenMessage | None = None
        self._item_ids: list[str] = []
        self._done_items: dict[int, JSONObject] = {}

    def feed(self, event: JSONObject) -> list[JSONObject]:
        """The Responses events for one Anthropic event."""
        if self._finished:
            return []
        events = self._start()
        self._accumulator.feed(event)
        kind, index, block, delta = (event.get(key) for key in ("type", "index", "content_block", "delta"))
        if kind == "content_block_start" and isinstance(index, int):
            events += self._block_start(index, block if isinstance(block, dict) else {})
        elif kind == "content_block_delta" and isinstance(index, int):
            events += self._block_delta(index, delta if isinstance(delta, dict) else {})
        elif kind == "content_block_stop" and isinstance(index, int):
            events += self._block_stop(index)
        elif kind == "message_stop":
            events += self._complete()
        elif kind == "error":
            events += self._fail(self._accumulator.error or {})
        return events

    def finish(self) -> list[JSONObject]:
        """Close the stream when the upstream ended: completed if the answer was whole, else failed."""
        if self._finished:
            return []
        events = self._start()
        if self._accumulator.stop_reason is not None:
            return events + self._complete()
        events += self._close_open("incomplete", include_calls=False)
        return events + self._fail({"type": "api_error", "message": _EARLY_END})

    def _event(self, kind: str, **fields: Any) -> JSONObject:
        event: JSONObject = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return event

    def _lifecycle(self, kind: str, status: str, output: list[JSONObject], usage: JSONObject | None = None,
                   error: JSONObject | None = None) -> JSONObject:
        response = _response(self._model, self._request, response_id=self._response_id, status=status,
                             created_at=self._created_at, output=output, usage=usage, error=error)
        return self._event(kind, response=response)

    def _start(self) -> list[JSONObject]:
        if self._started:
            return []
        self._started = True
        return [self._lifecycle("response.created", "in_progress", []),
                self._lifecycle("response.in_progress", "in_progress", [])]

    def _add_item(self, prefix: str) -> tuple[str, int]:
        item_id = _new_id(prefix)
        self._item_ids.append(item_id)
        return item_id, len(self._item_ids) - 1

    def _item_done(self, output_index: int, item: JSONObject) -> JSONObject:
        self._done_items[output_index] = item
        return self._event("response.output_item.done", output_index=output_index, item=copy.deepcopy(item))

    def _block_start(self, index: int, block: JSONObject) -> list[JSONObject]:
        kind = item_kind(block.get("type"))
        if kind is None or index in self._slots:
            return []
        if kind == "message":
            return self._text_start(index, block)
        events = self._close_message("completed")
        item_id, output_index = self._add_item("rs" if kind == "reasoning" else "fc")
        if kind == "reasoning":
            item: JSONObject = {"type": "reasoning", "id": item_id, "summary": []}
        else:
            item = {**_function_call(block, item_id, self._namespaces, "in_progress"), "arguments": ""}
        self._slots[index] = _Slot(kind, item_id, output_index)
        events.append(self._event("response.output_item.added", output_index=output_index, item=item))
        thinking = {"type": "thinking_delta", "thinking": block.get("thinking")}
        return events + self._block_delta(index, thinking)

    def _text_start(self, index: int, block: JSONObject) -> list[JSONObject]:
        events: list[JSONObject] = []
        message = self._message
        if message is None:
            item_id, output_index = self._add_item("msg")
            message = self._message = _OpenMessage(item_id, output_index)
            item = _message_item(item_id, "in_progress", [])
            events.append(self._event("response.output_item.added", output_index=output_index, item=item))
        part: JSONObject = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        slot = _Slot("message", message.item_id, message.output_index, len(message.parts))
        self._slots[index] = slot
        message.parts.append(part)
        events.append(self._event("response.content_part.added", item_id=slot.item_id,
                                  output_index=slot.output_index, content_index=slot.content_index,
                                  part=copy.deepcopy(part)))
        return events + self._block_delta(index, {"type": "text_delta", "text": block.get("text")})

    def _block_delta(self, index: int, delta: JSONObject) -> list[JSONObject]:
        slot = self._slots.get(index)
        if slot is None or slot.closed:
            return []
        kind = delta.get("type")
        where: JSONObject = {"item_id": slot.item_id, "output_index": slot.output_index}
        if slot.kind == "message" and kind == "text_delta" and delta.get("text"):
            return [self._event("response.output_text.delta", **where, content_index=slot.content_index,
                                delta=str(delta["text"]), logprobs=[])]
        if slot.kind == "function_call" and kind == "input_json_delta" and delta.get("partial_json"):
            return [self._event("response.function_call_arguments.delta", **where,
                                delta=str(delta["partial_json"]))]
        if slot.kind != "reasoning" or kind != "thinking_delta" or not delta.get("thinking"):
            return []
        events: list[JSONObject] = []
        if not slot.summary_open:
            slot.summary_open = True
            events.append(self._event("response.reasoning_summary_part.added", **where, summary_index=0,
                                      part={"type": "summary_text", "text": ""}))
        events.append(self._event("response.reasoning_summary_text.delta", **where, summary_index=0,
                                  delta=str(delta["thinking"])))
        return events

    def _block_stop(self, index: int) -> list[JSONObject]:
        slot = self._slots.get(index)
        if slot is None or slot.closed:
            return []
        slot.closed = True
        block = self._accumulator.block(index) or {}
        where: JSONObject = {"item_id": slot.item_id, "output_index": slot.output_index}
        if slot.kind == "message":
            part = _text_part(block)
            if self._message is not None and self._message.item_id == slot.item_id:
                self._message.parts[slot.content_index] = part
            return [self._event("response.output_text.done", **where, content_index=slot.content_index,
                                text=part["text"], logprobs=[]),
                    self._event("response.content_part.done", **where, content_index=slot.content_index,
                                part=copy.deepcopy(part))]
        if slot.kind == "function_call":
            item = _function_call(block, slot.item_id, self._namespaces, "completed")
            done = self._event("response.function_call_arguments.done", **where, arguments=item["arguments"])
            return [done, self._item_done(slot.output_index, item)]
        item = _reasoning_item(block, slot.item_id)
        events: list[JSONObject] = []
        if slot.summary_open:
            text, at = item["summary"][0]["text"] if item["summary"] else "", {**where, "summary_index": 0}
            events = [self._event("response.reasoning_summary_text.done", **at, text=text),
                      self._event("response.reasoning_summary_part.done", **at,
                                  part={"type": "summary_text", "text": text})]
        return events + [self._item_done(slot.output_index, item)]

    def _close_message(self, status: str) -> list[JSONObject]:
        message = self._message
        if message is None:
            return []
        events: list[JSONObject] = []
        for index in sorted(self._slots):
            slot = self._slots[index]
            if slot.kind == "message" and slot.item_id == message.item_id:
                events += self._block_stop(index)
        self._message = None
        item = _message_item(message.item_id, status, message.parts)
        return events + [self._item_done(message.output_index, item)]

    def _close_open(self, status: str, include_calls: bool) -> list[JSONObject]:
        events: list[JSONObject] = []
        for index in sorted(self._slots):
            slot = self._slots[index]
            if slot.kind == "reasoning" or (slot.kind == "function_call" and include_calls):
                events += self._block_stop(index)
        return events + self._close_message(status)

    def _complete(self) -> list[JSONObject]:
        message = self._accumulator.message()
        status, _ = _status(message.get("stop_reason"))
        events = self._close_open(status, include_calls=True)
        response = _final_response(message, self._model, self._request, self._response_id, self._created_at,
                                   list(self._item_ids))
        self._finished = True
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return events + [self._event(kind, response=response)]

    def _fail(self, error: JSONObject) -> list[JSONObject]:
        code = str(error.get("type") or "api_error")
        text = str(error.get("message") or "the upstream model failed")
        self._finished = True
        output = [self._done_items[index] for index in sorted(self._done_items)]
        usage = _usage(self._accumulator.message().get("usage")) if self._accumulator.started else None
        failed = {"code": "rate_limit_exceeded" if code == "rate_limit_error" else "server_error",
                  "message": text}
        return [self._event("error", code=code, message=text, param=None),
                self._lifecycle("response.failed", "failed", output, usage=usage, error=failed)]


def encode_responses_event(event: JSONObject) -> bytes:
    """One `event: <type>` + `data: <json>` SSE frame."""
    return encode_event(event)
