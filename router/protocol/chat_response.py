"""Response and error conversion between OpenAI Chat Completions and Anthropic Messages."""

from __future__ import annotations

import json
import time
import uuid
from types import MappingProxyType
from typing import Any, Final

from router.types import JSONObject

_STOP_TO_FINISH: Final = MappingProxyType({
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
})
_FINISH_TO_STOP: Final = MappingProxyType({
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "refusal",
})
_ERROR_TO_CHAT: Final = MappingProxyType({
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("authentication_error", "invalid_api_key"),
    "permission_error": ("permission_error", None),
    "not_found_error": ("not_found_error", None),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "timeout_error": ("server_error", "timeout"),
})
_CHAT_TO_ERROR: Final = MappingProxyType({
    "invalid_request_error": "invalid_request_error", "badrequesterror": "invalid_request_error",
    "authentication_error": "authentication_error", "authenticationerror": "authentication_error",
    "invalid_api_key": "authentication_error", "permission_error": "permission_error",
    "permissiondeniederror": "permission_error", "permission_denied": "permission_error",
    "not_found_error": "not_found_error", "notfounderror": "not_found_error",
    "model_not_found": "not_found_error",
    "rate_limit_error": "rate_limit_error", "ratelimiterror": "rate_limit_error",
    "rate_limit_exceeded": "rate_limit_error", "requests": "rate_limit_error", "tokens": "rate_limit_error",
    "insufficient_quota": "billing_error", "server_error": "api_error", "api_error": "api_error",
    "internalservererror": "api_error", "internal_error": "api_error", "overloaded_error": "overloaded_error",
    "overloaded": "overloaded_error", "engine_overloaded": "overloaded_error",
    "serviceunavailableerror": "overloaded_error", "request_too_large": "request_too_large",
    "timeout": "timeout_error", "timeout_error": "timeout_error",
})
_STATUS_TO_ERROR: Final = MappingProxyType({
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 503: "overloaded_error",
    504: "timeout_error", 529: "overloaded_error",
})


def as_object(value: Any) -> JSONObject:
    """The value if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def parse_arguments(raw: Any) -> JSONObject:
    """Tool-call arguments as an object; invalid or non-object JSON is kept as {"_raw": text}."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    text = raw if isinstance(raw, str) else json.dumps(raw)
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"_raw": text}
    return parsed if isinstance(parsed, dict) else {"_raw": text}


def tool_use_block(call_id: str, function: Any) -> JSONObject:
    """An Anthropic tool_use block from a chat function call (`name`, JSON `arguments`)."""
    function = as_object(function)
    return {"type": "tool_use", "id": call_id, "name": str(function.get("name") or ""),
            "input": parse_arguments(function.get("arguments"))}


def chat_tool_calls(blocks: list[JSONObject]) -> list[JSONObject]:
    """Chat tool calls for the tool_use blocks among Anthropic content blocks."""
    return [{"id": str(b.get("id") or ""), "type": "function",
             "function": {"name": str(b.get("name") or ""), "arguments": json.dumps(b.get("input") or {})}}
            for b in blocks if b.get("type") == "tool_use"]


def _int(value: Any) -> int:
    """A token count, 0 when absent or not an integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def finish_to_stop_reason(finish_reason: Any, has_tool_use: bool) -> str:
    """The Anthropic stop_reason for a chat finish_reason (a tool call with `stop` counts as tool_use)."""
    stop = _FINISH_TO_STOP.get(str(finish_reason), "end_turn")
    return "tool_use" if has_tool_use and stop == "end_turn" else stop


def stop_to_finish_reason(stop_reason: Any) -> str:
    """The chat finish_reason for an Anthropic stop_reason."""
    return _STOP_TO_FINISH.get(str(stop_reason), "stop")


def chat_usage_to_anthropic(usage: Any) -> JSONObject:
    """Anthropic usage from chat usage (cached prompt tokens become cache reads)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return {"input_tokens": max(_int(usage.get("prompt_tokens")) - cached, 0),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached,
            "output_tokens": _int(usage.get("completion_tokens"))}


def anthropic_usage_to_chat(usage: Any) -> JSONObject:
    """Chat usage from Anthropic usage (prompt tokens include cache reads and writes)."""
    usage = usage if isinstance(usage, dict) else {}
    cached = _int(usage.get("cache_read_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + cached + _int(usage.get("cache_creation_input_tokens"))
    output = _int(usage.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": cached}}


def message_id_from_chat(chat_id: Any) -> str:
    """An Anthropic message id derived from a chat completion id."""
    if not isinstance(chat_id, str) or not chat_id:
        return "msg_" + uuid.uuid4().hex[:24]
    return "msg_" + chat_id.removeprefix("chatcmpl-")


def chat_id_from_message(message_id: Any) -> str:
    """A chat completion id derived from an Anthropic message id."""
    if not isinstance(message_id, str) or not message_id:
        return "chatcmpl-" + uuid.uuid4().hex[:24]
    return "chatcmpl-" + message_id.removeprefix("msg_")


def _message_text(content: Any) -> str:
    """The text of a chat message's content (a string or a list of text parts)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


def chat_response_to_anthropic(resp: JSONObject, model: str) -> JSONObject:
    """A chat.completion as an Anthropic message named after `model`."""
    choices = resp.get("choices")
    choice = as_object(choices[0]) if isinstance(choices, list) and choices else {}
    message = as_object(choice.get("message"))
    msg_id = message_id_from_chat(resp.get("id"))
    content: list[JSONObject] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _message_text(message.get("content")) or _message_text(message.get("refusal"))
    if text:
        content.append({"type": "text", "text": text})
    for position, call in enumerate(message.get("tool_calls") or []):
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            continue
        call_id = str(call.get("id") or f"toolu_{msg_id[4:]}_{position}")
        content.append(tool_use_block(call_id, call.get("function")))
    if isinstance(message.get("function_call"), dict):
        content.append(tool_use_block(f"toolu_{msg_id[4:]}_fn", message["function_call"]))
    has_tool_use = any(block["type"] == "tool_use" for block in content)
    stop_reason = finish_to_stop_reason(choice.get("finish_reason"), has_tool_use)
    return {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": chat_usage_to_anthropic(resp.get("usage")),
    }


def anthropic_response_to_chat(msg: JSONObject, model: str, *, created: int | None = None) -> JSONObject:
    """An Anthropic message as a chat.completion named after `model`."""
    blocks = [b for b in msg.get("content") or [] if isinstance(b, dict)]
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
    thinking = "".join(str(b.get("thinking") or "") for b in blocks if b.get("type") == "thinking")
    calls = chat_tool_calls(blocks)
    message: JSONObject = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = thinking
    return {
        "id": chat_id_from_message(msg.get("id")), "object": "chat.completion",
        "created": int(time.time()) if created is None else created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": stop_to_finish_reason(msg.get("stop_reason"))}],
        "usage": anthropic_usage_to_chat(msg.get("usage")),
    }


def anthropic_error_to_chat(err: JSONObject) -> JSONObject:
    """An Anthropic error body (or stream `error` event) as an OpenAI error body."""
    inner = as_object(err.get("error")) or err
    kind = str(inner.get("type") or "api_error")
    chat_type, code = _ERROR_TO_CHAT.get(kind, ("server_error", None))
    message = inner.get("message")
    return {"error": {"message": message if isinstance(message, str) else kind, "type": chat_type,
                      "param": None, "code": code}}


def chat_error_to_anthropic(err: JSONObject) -> JSONObject:
    """An OpenAI (or OpenAI-compatible server's) error body as an Anthropic error body."""
    inner = err.get("error", err)
    if isinstance(inner, str):
        inner = {"message": inner}
    if not isinstance(inner, dict):
        inner = {}
    kind = None
    for key in ("code", "type"):
        value = inner.get(key)
        if isinstance(value, str):
            kind = kind or _CHAT_TO_ERROR.get(value.lower())
        elif isinstance(value, int) and not isinstance(value, bool):
            fallback = "api_error" if value >= 500 else "invalid_request_error"
            kind = kind or _STATUS_TO_ERROR.get(value, fallback)
    message = inner.get("message")
    return {"type": "error", "error": {"type": kind or "api_error",
                                       "message": message if isinstance(message, str) else "upstream error"}}
