"""Renders an Answer in each provider dialect, as a JSON body or as the list of stream events."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from router.replay.answers import Answer

JSONObject = dict[str, Any]
_ANTHROPIC_STOP = {"end": "end_turn", "max_tokens": "max_tokens", "tool_use": "tool_use"}
_CHAT_FINISH = {"end": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
SIGNATURE = "c2lnbmF0dXJl"


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def text_pieces(text: str) -> list[str]:
    """Split text into word-sized stream deltas that concatenate back to it."""
    pieces: list[str] = []
    for index, word in enumerate(text.split(" ")):
        pieces.append(word if index == 0 else " " + word)
    return [piece for piece in pieces if piece] or ([text] if text else [])


def json_pieces(arguments: dict[str, Any]) -> list[str]:
    """A tool call's JSON arguments in at least two pieces."""
    encoded = json.dumps(arguments)
    middle = max(1, len(encoded) // 2)
    return [encoded[:middle], encoded[middle:]]


def anthropic_usage(answer: Answer, output_tokens: int | None = None) -> JSONObject:
    """Anthropic usage: input excludes cached tokens."""
    return {"input_tokens": answer.input_tokens - answer.cached_input_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": answer.cached_input_tokens,
            "output_tokens": answer.output_tokens if output_tokens is None else output_tokens}


def anthropic_message(answer: Answer, model: str) -> JSONObject:
    """A Messages API response."""
    content: list[JSONObject] = []
    if answer.thinking is not None:
        content.append({"type": "thinking", "thinking": answer.thinking, "signature": SIGNATURE})
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    for call in answer.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return {"id": _id("msg_"), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": _ANTHROPIC_STOP[answer.stop], "stop_sequence": None, "usage": anthropic_usage(answer)}


def anthropic_events(answer: Answer, model: str) -> list[JSONObject]:
    """The Messages API stream of an answer."""
    message = anthropic_message(answer, model)
    start = {**message, "content": [], "stop_reason": None, "usage": anthropic_usage(answer, 1)}
    events: list[JSONObject] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "thinking":
            opening: JSONObject = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in text_pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in text_pieces(block["text"])]
        else:
            opening = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in json_pieces(block["input"])]
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        if index == 0:
            events.append({"type": "ping"})
        events.extend({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas)
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": answer.output_tokens}})
    events.append({"type": "message_stop"})
    return events


def chat_usage(answer: Answer) -> JSONObject:
    """Chat Completions usage: prompt tokens include cached ones."""
    return {"prompt_tokens": answer.input_tokens, "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
            "prompt_tokens_details": {"cached_tokens": answer.cached_input_tokens}}


def _chat_logprobs(answer: Answer) -> JSONObject | None:
    if answer.logprobs is None:
        return None
    pieces = text_pieces(answer.text) or [""]
    tokens = [pieces[i % len(pieces)] for i in range(len(answer.logprobs))]
    return {"content": [{"token": token, "logprob": value, "bytes": None, "top_logprobs": []}
                        for token, value in zip(tokens, answer.logprobs, strict=True)]}


def chat_completion(answer: Answer, model: str, request: JSONObject) -> JSONObject:
    """A chat.completion response."""
    message: JSONObject = {"role": "assistant", "content": answer.text or None, "refusal": None}
    if answer.thinking is not None:
        message["reasoning_content"] = answer.thinking
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
            for call in answer.tool_calls
        ]
    logprobs = _chat_logprobs(answer) if request.get("logprobs") else None
    return {"id": _id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                         "finish_reason": _CHAT_FINISH[answer.stop]}],
            "usage": chat_usage(answer), "system_fingerprint": None}


def chat_chunks(answer: Answer, model: str, request: JSONObject) -> list[JSONObject]:
    """The chat.completion.chunk stream of an answer (without the final [DONE])."""
    chunk_id, created = _id("chatcmpl-"), int(time.time())

    def chunk(delta: JSONObject, finish: str | None = None, logprobs: JSONObject | None = None) -> JSONObject:
        return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if answer.thinking is not None:
        chunks.extend(chunk({"reasoning_content": piece}) for piece in text_pieces(answer.thinking))
    full_logprobs = _chat_logprobs(answer) if request.get("logprobs") else None
    pieces = text_pieces(answer.text)
    for index, piece in enumerate(pieces):
        logprobs = None
        if full_logprobs is not None and index == len(pieces) - 1:
            logprobs = full_logprobs
        chunks.append(chunk({"content": piece}, logprobs=logprobs))
    for index, call in enumerate(answer.tool_calls):
        arguments = json_pieces(call.arguments)
        chunks.append(chunk({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]}))
        chunks.extend(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                      for piece in arguments)
    chunks.append(chunk({}, _CHAT_FINISH[answer.stop]))
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        chunks.append({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": chat_usage(answer)})
    return chunks


def _responses_output(answer: Answer) -> list[JSONObject]:
    output: list[JSONObject] = []
    if answer.thinking is not None:
        output.append({"type": "reasoning", "id": _id("rs_"), "summary": [
            {"type": "summary_text", "text": answer.thinking}]})
    if answer.text:
        output.append({"type": "message", "id": _id("msg_"), "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": answer.text, "annotations": []}]})
    for call in answer.tool_calls:
        output.append({"type": "function_call", "id": _id("fc_"), "call_id": call.id, "name": call.name,
                       "arguments": json.dumps(call.arguments), "status": "completed"})
    return output


def responses_response(answer: Answer, model: str, request: JSONObject, status: str = "completed",
                       output: list[JSONObject] | None = None) -> JSONObject:
    """A Responses API response object."""
    incomplete = answer.stop == "max_tokens" and status == "completed"
    return {
        "id": _id("resp_"), "object": "response", "created_at": int(time.time()),
        "status": "incomplete" if incomplete else status, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
        "model": model, "output": _responses_output(answer) if output is None else output,
        "parallel_tool_calls": True, "previous_response_id": None, "temperature": 1.0, "top_p": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools", []), "truncation": "disabled", "metadata": {},
        "usage": None if status == "in_progress" else {
            "input_tokens": answer.input_tokens,
            "input_tokens_details": {"cached_tokens": answer.cached_input_tokens},
            "output_tokens": answer.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": answer.input_tokens + answer.output_tokens},
    }


def responses_events(answer: Answer, model: str, request: JSONObject) -> list[JSONObject]:
    """The Responses API stream of an answer, with sequence numbers."""
    final = responses_response(answer, model, request)
    pending = responses_response(answer, model, request, status="in_progress", output=[])
    pending["id"] = final["id"]
    events: list[JSONObject] = [{"type": "response.created", "response": pending},
                                {"type": "response.in_progress", "response": pending}]
    for index, item in enumerate(final["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "status": "in_progress", "content": []}})
            part = {"type": "output_text", "text": "", "annotations": []}
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append({"type": "response.content_part.added", **common, "part": part})
            events.extend({"type": "response.output_text.delta", **common, "delta": piece, "logprobs": []}
                          for piece in text_pieces(text))
            events.append({"type": "response.output_text.done", **common, "text": text, "logprobs": []})
            events.append({"type": "response.content_part.done", **common, "part": item["content"][0]})
        elif item["type"] == "function_call":
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "arguments": "", "status": "in_progress"}})
            for piece in json_pieces(json.loads(item["arguments"])):
                events.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                               "output_index": index, "delta": piece})
            events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                           "output_index": index, "arguments": item["arguments"]})
        else:
            events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    terminal = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    events.append({"type": terminal, "response": final})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               503: "overloaded_error", 529: "overloaded_error"}


def error_body(dialect: str, status: int, message: str) -> JSONObject:
    """A provider's error body."""
    kind = ERROR_TYPES.get(status, "api_error")
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def stream_error_event(dialect: str, message: str) -> JSONObject:
    """The error event a provider sends in the middle of a stream."""
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": "overloaded_error", "message": message}}
    if dialect == "openai_chat":
        return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return {"type": "error", "code": "server_error", "message": message, "param": None}
