"""Pure functions rendering an Answer in each provider dialect: JSON bodies, SSE event lists, error bodies."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from router.replay.answers import Answer, Dialect

SIGNATURE: Final = "c2lnbmF0dXJl"
FINGERPRINT: Final = "fp_replay"
ERROR_TYPES: Final[Mapping[int, str]] = MappingProxyType({
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    504: "timeout_error", 529: "overloaded_error",
})
ERROR_MESSAGES: Final[Mapping[str, str]] = MappingProxyType({
    "invalid_request_error": "Invalid request.", "authentication_error": "Invalid API key.",
    "permission_error": "Permission denied.", "not_found_error": "Not found.",
    "request_too_large": "Request exceeds the maximum allowed size.", "rate_limit_error": "Rate limited.",
    "api_error": "Internal server error.", "timeout_error": "Request timed out.",
    "overloaded_error": "Overloaded",
})
_ANTHROPIC_STOP: Final[Mapping[str, str]] = MappingProxyType(
    {"end": "end_turn", "max_tokens": "max_tokens", "tool_use": "tool_use"})
_CHAT_FINISH: Final[Mapping[str, str]] = MappingProxyType(
    {"end": "stop", "max_tokens": "length", "tool_use": "tool_calls"})
_WORDS: Final = re.compile(r"\s*\S+\s*")

Json = dict[str, Any]


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: an optional event name and a JSON object (or the literal `[DONE]`)."""

    event: str | None
    data: Json | str

    def encode(self) -> bytes:
        """The event as wire bytes (`event:` line only when named, compact JSON data)."""
        payload = self.data if isinstance(self.data, str) else json.dumps(self.data, separators=(",", ":"))
        head = f"event: {self.event}\n" if self.event else ""
        return f"{head}data: {payload}\n\n".encode()


def new_id(prefix: str, length: int = 24) -> str:
    """A fresh random id with a provider prefix (`msg_01`, `chatcmpl-`, `resp_`, `toolu_01`, `call_`...)."""
    return prefix + uuid.uuid4().hex[:length]


def split_text(text: str) -> list[str]:
    """Stream pieces of a text, split after spaces; joined, they give the text back."""
    return _WORDS.findall(text) or ([text] if text else [])


def split_json(text: str) -> list[str]:
    """Two non-empty pieces (when possible) of a JSON string, for argument deltas."""
    middle = max(1, len(text) // 2)
    return [text[:middle], text[middle:]] if len(text) >= 2 else [text]


def arguments_json(arguments: Mapping[str, Any]) -> str:
    """Tool-call arguments as the JSON string OpenAI dialects carry."""
    return json.dumps(arguments)


def _reasoning_tokens(answer: Answer) -> int:
    """An estimate of the output tokens spent thinking."""
    return min(answer.output_tokens, len(answer.thinking or "") // 4)


# ----------------------------------------------------------------------------------------- Anthropic


def _anthropic_usage(answer: Answer, output_tokens: int) -> Json:
    """Anthropic usage: `input_tokens` excludes the cached prompt tokens."""
    return {"input_tokens": max(0, answer.input_tokens - answer.cached_input_tokens),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": answer.cached_input_tokens,
            "output_tokens": output_tokens, "service_tier": "standard"}


def anthropic_blocks(answer: Answer) -> list[Json]:
    """The content blocks: thinking, text (unless only tool calls), tool_use."""
    blocks: list[Json] = []
    if answer.thinking is not None:
        blocks.append({"type": "thinking", "thinking": answer.thinking, "signature": SIGNATURE})
    if answer.text or not answer.tool_calls:
        blocks.append({"type": "text", "text": answer.text})
    for call in answer.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


def anthropic_message(answer: Answer, model: str, *, message_id: str) -> Json:
    """A non-streaming Messages API reply."""
    return {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": anthropic_blocks(answer), "stop_reason": _ANTHROPIC_STOP[answer.stop],
            "stop_sequence": None,
            "usage": _anthropic_usage(answer, answer.output_tokens)}


def _event(kind: str, **fields: Any) -> SSEEvent:
    """A named event whose data carries the same `type`."""
    return SSEEvent(kind, {"type": kind, **fields})


def anthropic_events(answer: Answer, model: str, *, message_id: str) -> list[SSEEvent]:
    """The Messages API stream: message_start, blocks with ping after the first start, message_delta/stop."""
    start = anthropic_message(answer, model, message_id=message_id)
    start.update(content=[], stop_reason=None, usage=_anthropic_usage(answer, 1))
    events = [_event("message_start", message=start)]
    for index, block in enumerate(anthropic_blocks(answer)):
        deltas: list[Json]
        if block["type"] == "thinking":
            opening: Json = {"type": "thinking", "thinking": "", "signature": ""}
            pieces = split_text(block["thinking"])
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in pieces]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in split_text(block["text"])]
        else:
            opening = {**block, "input": {}}
            pieces = ["", *split_json(json.dumps(block["input"]))]
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        events.append(_event("content_block_start", index=index, content_block=opening))
        if index == 0:
            events.append(_event("ping"))
        events.extend(_event("content_block_delta", index=index, delta=delta) for delta in deltas)
        events.append(_event("content_block_stop", index=index))
    usage = _anthropic_usage(answer, answer.output_tokens)
    del usage["service_tier"]
    delta = {"stop_reason": _ANTHROPIC_STOP[answer.stop], "stop_sequence": None}
    events.append(_event("message_delta", delta=delta, usage=usage))
    events.append(_event("message_stop"))
    return events


# ----------------------------------------------------------------------------------------- Chat completions


def _chat_usage(answer: Answer) -> Json:
    """Chat usage: `prompt_tokens` includes the cached tokens."""
    return {"prompt_tokens": answer.input_tokens, "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
            "prompt_tokens_details": {"cached_tokens": answer.cached_input_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": _reasoning_tokens(answer), "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def logprob_tokens(text: str, count: int) -> list[str]:
    """The text cut into `count` tokens (pieces grouped, or padded with ""); joined, they give the text."""
    pieces = split_text(text)
    if count <= 0:
        return []
    if len(pieces) <= count:
        return pieces + [""] * (count - len(pieces))
    size, extra = divmod(len(pieces), count)
    tokens: list[str] = []
    start = 0
    for number in range(count):
        end = start + size + (1 if number < extra else 0)
        tokens.append("".join(pieces[start:end]))
        start = end
    return tokens


def _logprob_entries(answer: Answer, body: Mapping[str, Any]) -> list[Json] | None:
    """Chat `logprobs.content` entries when the answer has logprobs and the request asked for them."""
    if answer.logprobs is None or body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    wants_top = isinstance(top, int) and top > 0
    tokens = logprob_tokens(answer.text, len(answer.logprobs))
    entries: list[Json] = []
    for token, logprob in zip(tokens, answer.logprobs, strict=True):
        alternative = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
        entries.append({**alternative, "top_logprobs": [alternative] if wants_top else []})
    return entries


def _chat_tool_calls(answer: Answer) -> list[Json]:
    """Chat `message.tool_calls`."""
    return [{"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments_json(
        call.arguments)}} for call in answer.tool_calls]


def chat_completion(answer: Answer, model: str, body: Mapping[str, Any], *, completion_id: str,
                    created: int) -> Json:
    """A non-streaming chat.completion."""
    content = answer.text if answer.text or not answer.tool_calls else None
    message: Json = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if answer.thinking is not None:
        message["reasoning_content"] = answer.thinking
    if answer.tool_calls:
        message["tool_calls"] = _chat_tool_calls(answer)
    entries = _logprob_entries(answer, body)
    logprobs = None if entries is None else {"content": entries, "refusal": None}
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                         "finish_reason": _CHAT_FINISH[answer.stop]}],
            "usage": _chat_usage(answer), "service_tier": "default", "system_fingerprint": FINGERPRINT}


def chat_chunks(answer: Answer, model: str, body: Mapping[str, Any], *, completion_id: str,
                created: int) -> list[SSEEvent]:
    """The chat stream: role chunk, reasoning/content/tool-call chunks, finish, [usage chunk], [DONE]."""
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    base: Json = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                  "service_tier": "default", "system_fingerprint": FINGERPRINT}

    def chunk(delta: Json, finish: str | None = None, logprobs: Json | None = None) -> SSEEvent:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        data = {**base, "choices": [choice]}
        if include_usage:
            data["usage"] = None
        return SSEEvent(None, data)

    opening = "" if answer.text or not answer.tool_calls else None
    events = [chunk({"role": "assistant", "content": opening, "refusal": None})]
    events += [chunk({"reasoning_content": piece}) for piece in split_text(answer.thinking or "")]
    entries = _logprob_entries(answer, body)
    if entries is None:
        events += [chunk({"content": piece}) for piece in split_text(answer.text)]
    else:
        events += [chunk({"content": entry["token"]}, logprobs={"content": [entry], "refusal": None})
                   for entry in entries]
    for index, call in enumerate(_chat_tool_calls(answer)):
        function = call["function"]
        events.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": {"name": function["name"], "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                   for piece in split_json(function["arguments"])]
    events.append(chunk({}, _CHAT_FINISH[answer.stop]))
    if include_usage:
        events.append(SSEEvent(None, {**base, "choices": [], "usage": _chat_usage(answer)}))
    events.append(SSEEvent(None, "[DONE]"))
    return events


# ----------------------------------------------------------------------------------------- Responses


def _responses_usage(answer: Answer) -> Json:
    """Responses usage: `input_tokens` includes the cached tokens."""
    return {"input_tokens": answer.input_tokens,
            "input_tokens_details": {"cached_tokens": answer.cached_input_tokens},
            "output_tokens": answer.output_tokens,
            "output_tokens_details": {"reasoning_tokens": _reasoning_tokens(answer)},
            "total_tokens": answer.input_tokens + answer.output_tokens}


def responses_items(answer: Answer, *, response_id: str) -> list[Json]:
    """The finished output items: reasoning, message (unless only tool calls), function calls."""
    suffix = response_id.removeprefix("resp_")
    items: list[Json] = []
    if answer.thinking is not None:
        items.append({"type": "reasoning", "id": f"rs_{suffix}",
                      "summary": [{"type": "summary_text", "text": answer.thinking}]})
    if answer.text or not answer.tool_calls:
        status = "incomplete" if answer.stop == "max_tokens" else "completed"
        part = {"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}
        items.append({"type": "message", "id": f"msg_{suffix}", "status": status, "role": "assistant",
                      "content": [part]})
    for number, call in enumerate(answer.tool_calls):
        items.append({"type": "function_call", "id": f"fc_{suffix}{number:02d}", "call_id": call.id,
                      "name": call.name, "arguments": arguments_json(call.arguments), "status": "completed"})
    return items


def _response_object(answer: Answer, model: str, body: Mapping[str, Any], *, response_id: str, created: int,
                     output: list[Json], final: bool) -> Json:
    """The `response` object; request settings are echoed back as the real API does."""
    status = ("incomplete" if answer.stop == "max_tokens" else "completed") if final else "in_progress"
    return {
        "id": response_id, "object": "response", "created_at": created, "status": status, "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": model, "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None}, "service_tier": "default",
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"),
        "usage": _responses_usage(answer) if final else None,
        "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


def responses_response(answer: Answer, model: str, body: Mapping[str, Any], *, response_id: str,
                       created: int) -> Json:
    """A non-streaming Responses API reply."""
    return _response_object(answer, model, body, response_id=response_id, created=created,
                            output=responses_items(answer, response_id=response_id), final=True)


def responses_events(answer: Answer, model: str, body: Mapping[str, Any], *, response_id: str,
                     created: int) -> list[SSEEvent]:
    """The Responses stream, every event with a counting `sequence_number`."""
    events: list[SSEEvent] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(_event(kind, **fields, sequence_number=len(events)))

    shell = _response_object(answer, model, body, response_id=response_id, created=created, output=[],
                             final=False)
    emit("response.created", response=shell)
    emit("response.in_progress", response=shell)
    items = responses_items(answer, response_id=response_id)
    for index, item in enumerate(items):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            text = item["summary"][0]["text"]
            emit("response.output_item.added", output_index=index, item={**item, "summary": []})
            emit("response.reasoning_summary_part.added", **where, summary_index=0,
                 part={"type": "summary_text", "text": ""})
            for piece in split_text(text):
                emit("response.reasoning_summary_text.delta", **where, summary_index=0, delta=piece)
            emit("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
            emit("response.reasoning_summary_part.done", **where, summary_index=0, part=item["summary"][0])
        elif item["type"] == "message":
            part = item["content"][0]
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "content": []})
            emit("response.content_part.added", **where, content_index=0, part={**part, "text": ""})
            for piece in split_text(part["text"]):
                emit("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[])
            emit("response.content_part.done", **where, content_index=0, part=part)
        else:
            emit("response.output_item.added", output_index=index,
                 item={**item, "arguments": "", "status": "in_progress"})
            for piece in split_json(item["arguments"]):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    final = _response_object(answer, model, body, response_id=response_id, created=created, output=items,
                             final=True)
    emit("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
    return events


# ----------------------------------------------------------------------------------------- Errors


def error_type(status: int) -> str:
    """The error type name for an HTTP status (Anthropic names, used by both dialects here)."""
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(dialect: Dialect, status: int, message: str | None = None, *, request_id: str) -> Json:
    """A dialect-correct error body for an HTTP error status."""
    kind = error_type(status)
    text = message or ERROR_MESSAGES.get(kind, "Error.")
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": text}, "request_id": request_id}
    return {"error": {"message": text, "type": kind, "param": None, "code": None}}


def stream_error_event(dialect: Dialect, *, sequence_number: int) -> SSEEvent:
    """The error a provider sends in place of the rest of a stream (an overload / server error)."""
    if dialect == "anthropic":
        return _event("error", error={"type": "overloaded_error", "message": "Overloaded"})
    message = "The server had an error while processing your request."
    if dialect == "openai_chat":
        error = {"message": message, "type": "server_error", "param": None, "code": None}
        return SSEEvent(None, {"error": error})
    return _event("error", code="server_error", message=message, param=None, sequence_number=sequence_number)
