"""Type checks of an OpenAI Chat Completions request (`/v1/chat/completions`) before any use.

Every field the proxy reads or converts is checked for its JSON type, at any depth (null is the same as absent,
as the API allows); unknown fields and unknown part or tool types are left to the provider.
"""

from __future__ import annotations

from typing import Final

from router.protocol.checks import (
    Check,
    any_object,
    boolean,
    fields,
    integer,
    list_of,
    number,
    object_of,
    one_of,
    positive_integer,
    string,
    string_or_list,
    string_or_object,
    tagged,
)
from router.types import JSONObject

CHAT_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

_IMAGE_URL: Final = string_or_object(fields({"url": string, "detail": string}, required=("url",)),
                                     "a string or an object with a url")
CONTENT_PART: Final = tagged({
    "text": fields({"text": string}, required=("text",)),
    "refusal": fields({"refusal": string}, required=("refusal",)),
    "image_url": fields({"image_url": _IMAGE_URL}, required=("image_url",)),
    "input_audio": fields({"input_audio": fields({"data": string, "format": string})}, required=("input_audio",)),
    "file": fields({"file": fields({"file_data": string, "file_id": string, "filename": string})},
                   required=("file",)),
})
_ARGUMENTS: Final = string_or_object(any_object, "a string of JSON (or an object)")
FUNCTION_CALL: Final = fields({"name": string, "arguments": _ARGUMENTS}, required=("name",))
TOOL_CALL: Final = tagged({
    "function": fields({"id": string, "function": FUNCTION_CALL}, required=("function",)),
    "custom": fields({"id": string, "custom": fields({"name": string, "input": string}, required=("name",))},
                     required=("custom",)),
}, default="function")
MESSAGE: Final = fields({
    "role": one_of(CHAT_ROLES),
    "content": string_or_list(list_of(CONTENT_PART), "a string or a list"),
    "name": string,
    "refusal": string,
    "tool_calls": list_of(TOOL_CALL),
    "function_call": FUNCTION_CALL,
    "tool_call_id": string,
}, required=("role",))
FUNCTION: Final = fields({"name": string, "description": string, "parameters": any_object, "strict": boolean},
                         required=("name",))
TOOL: Final = tagged({
    "function": fields({"function": FUNCTION}, required=("function",)),
    "custom": fields({"custom": fields({"name": string, "description": string, "format": any_object},
                                       required=("name",))}, required=("custom",)),
}, default="function")
_NAMED: Final = fields({"name": string}, required=("name",))
TOOL_CHOICE: Final = string_or_object(tagged({
    "function": fields({"function": _NAMED}, required=("function",)),
    "custom": fields({"custom": _NAMED}, required=("custom",)),
    "allowed_tools": fields({"allowed_tools": fields({"mode": string, "tools": list_of(any_object)})},
                            required=("allowed_tools",)),
}), "one of none, auto, required or an object", one_of({"none", "auto", "required"}))
RESPONSE_FORMAT: Final = tagged({
    "json_schema": fields({"json_schema": fields({"name": string, "description": string, "schema": any_object,
                                                  "strict": boolean})}, required=("json_schema",)),
})
FIELDS: Final[tuple[tuple[str, Check], ...]] = (
    ("max_tokens", positive_integer),
    ("max_completion_tokens", positive_integer),
    ("n", positive_integer),
    ("stream", boolean),
    ("stream_options", fields({"include_usage": boolean, "include_obfuscation": boolean})),
    ("temperature", number),
    ("top_p", number),
    ("presence_penalty", number),
    ("frequency_penalty", number),
    ("seed", integer),
    ("logprobs", boolean),
    ("top_logprobs", integer),
    ("stop", string_or_list(list_of(string), "a string or a list of strings")),
    ("user", string),
    ("metadata", object_of(string)),
    ("store", boolean),
    ("parallel_tool_calls", boolean),
    ("response_format", RESPONSE_FORMAT),
    ("reasoning_effort", string),
    ("tools", list_of(TOOL)),
    ("tool_choice", TOOL_CHOICE),
    ("functions", list_of(FUNCTION)),
    ("function_call", string_or_object(_NAMED, "a string or an object with a name")),
    ("logit_bias", object_of(number)),
    ("modalities", list_of(string)),
    ("service_tier", string),
    ("prediction", any_object),
    ("audio", any_object),
    ("web_search_options", any_object),
    ("verbosity", string),
    ("prompt_cache_key", string),
    ("safety_identifier", string),
)
"""The known top-level fields and their checks (`model` and `messages` are checked first)."""


def check_chat_fields(body: JSONObject) -> None:
    """Every known field of a Chat Completions request, and every message."""
    for index, message in enumerate(body["messages"]):
        MESSAGE(message, f"messages.{index}")
    for key, check in FIELDS:
        value = body.get(key)
        if value is not None:
            check(value, key)
