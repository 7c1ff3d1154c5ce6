"""Type checks of an OpenAI Responses request (`/v1/responses`) before any use.

Every field the proxy reads or converts is checked for its JSON type, at any depth (null is the same as absent);
unknown fields and unknown item, part or tool types are left to the provider.
"""

from __future__ import annotations

from typing import Final

from router.protocol.checks import (
    Check,
    any_list,
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

RESPONSES_ROLES: Final = frozenset({"user", "assistant", "system", "developer"})

_TEXT: Final = fields({"text": string, "annotations": any_list, "logprobs": any_list}, required=("text",))
CONTENT_PART: Final = tagged({
    "input_text": _TEXT,
    "output_text": _TEXT,
    "text": _TEXT,
    "refusal": fields({"refusal": string}, required=("refusal",)),
    "input_image": fields({"image_url": string_or_object(fields({"url": string}, required=("url",)),
                                                         "a string or an object with a url"),
                           "file_id": string, "detail": string}),
    "input_file": fields({"file_data": string, "file_url": string, "file_id": string, "filename": string}),
    "input_audio": fields({"input_audio": any_object}),
})
_CONTENT: Final = string_or_list(list_of(CONTENT_PART), "a string or a list of content parts")
_ARGUMENTS: Final = string_or_object(any_object, "a string of JSON (or an object)")
INPUT_ITEM: Final = tagged({
    "message": fields({"role": one_of(RESPONSES_ROLES), "content": _CONTENT, "id": string, "status": string},
                      required=("role",)),
    "function_call": fields({"call_id": string, "name": string, "arguments": _ARGUMENTS, "namespace": string,
                             "id": string, "status": string}, required=("name",)),
    "function_call_output": fields({"call_id": string, "output": _CONTENT, "id": string, "status": string},
                                   required=("call_id",)),
    "custom_tool_call": fields({"call_id": string, "name": string, "input": string, "id": string},
                               required=("name",)),
    "custom_tool_call_output": fields({"call_id": string, "output": _CONTENT, "id": string},
                                      required=("call_id",)),
    "reasoning": fields({"id": string, "summary": list_of(any_object), "content": any_list,
                         "encrypted_content": string}),
    "item_reference": fields({"id": string}, required=("id",)),
}, default="message")
FUNCTION_TOOL: Final = fields({"name": string, "description": string, "parameters": any_object, "strict": boolean},
                              required=("name",))
TOOL: Final = tagged({
    "function": FUNCTION_TOOL,
    "namespace": fields({"name": string, "description": string, "tools": list_of(tagged({"function": FUNCTION_TOOL}))},
                        required=("name",)),
    "custom": fields({"name": string, "description": string, "format": any_object}, required=("name",)),
})
TOOL_CHOICE: Final = string_or_object(tagged({
    "function": fields({"name": string, "namespace": string}, required=("name",)),
    "custom": fields({"name": string}, required=("name",)),
    "allowed_tools": fields({"mode": string, "tools": list_of(any_object)}),
}), "one of none, auto, required or an object", one_of({"none", "auto", "required"}))
TEXT_CONFIG: Final = fields({
    "format": tagged({"json_schema": fields({"name": string, "description": string, "schema": any_object,
                                             "strict": boolean})}),
    "verbosity": string,
})
FIELDS: Final[tuple[tuple[str, Check], ...]] = (
    ("instructions", string),
    ("max_output_tokens", positive_integer),
    ("stream", boolean),
    ("stream_options", any_object),
    ("temperature", number),
    ("top_p", number),
    ("top_logprobs", integer),
    ("max_tool_calls", integer),
    ("parallel_tool_calls", boolean),
    ("store", boolean),
    ("background", boolean),
    ("previous_response_id", string),
    ("conversation", string_or_object(fields({"id": string}, required=("id",)), "a string or an object")),
    ("metadata", object_of(string)),
    ("user", string),
    ("safety_identifier", string),
    ("prompt_cache_key", string),
    ("service_tier", string),
    ("truncation", string),
    ("include", list_of(string)),
    ("reasoning", fields({"effort": string, "summary": string, "generate_summary": string})),
    ("text", TEXT_CONFIG),
    ("tools", list_of(TOOL)),
    ("tool_choice", TOOL_CHOICE),
    ("prompt", any_object),
)
"""The known top-level fields and their checks (`model` and `input` are checked first)."""


def check_responses_fields(body: JSONObject) -> None:
    """Every known field of a Responses request, and every input item when `input` is a list."""
    items = body["input"]
    for index, item in enumerate(items if isinstance(items, list) else ()):
        INPUT_ITEM(item, f"input.{index}")
    for key, check in FIELDS:
        value = body.get(key)
        if value is not None:
            check(value, key)
