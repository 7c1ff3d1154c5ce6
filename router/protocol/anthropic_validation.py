"""Type checks of an Anthropic Messages request (`/v1/messages`, `/v1/messages/count_tokens`) before any use.

Every field the proxy reads or converts is checked for its JSON type, at any depth; unknown fields and unknown
block, source or tool types are left to the provider.
"""

from __future__ import annotations

from typing import Final

from router.protocol.checks import (
    Check,
    any_list,
    any_object,
    boolean,
    both,
    fields,
    integer,
    list_of,
    number,
    one_of,
    positive_integer,
    string,
    string_or_list,
    tagged,
)
from router.types import JSONObject

ANTHROPIC_ROLES: Final = frozenset({"user", "assistant", "system"})

CACHE_CONTROL: Final = fields({"type": string, "ttl": string}, required=("type",))
_BASE64: Final = fields({"media_type": string, "data": string}, required=("data",))
_URL: Final = fields({"url": string}, required=("url",))
_FILE: Final = fields({"file_id": string}, required=("file_id",))
TEXT_BLOCK: Final = fields({"text": string, "cache_control": CACHE_CONTROL, "citations": any_list}, required=("text",))
IMAGE_BLOCK: Final = fields({
    "source": tagged({"base64": _BASE64, "url": _URL, "file": _FILE}),
    "cache_control": CACHE_CONTROL,
}, required=("source",))
_DOCUMENT_SOURCE: Final = tagged({
    "base64": _BASE64, "url": _URL, "file": _FILE,
    "text": fields({"media_type": string, "data": string}, required=("data",)),
    "content": fields({"content": string_or_list(list_of(tagged({"text": TEXT_BLOCK, "image": IMAGE_BLOCK})),
                                                 "a string or a list of text and image blocks")},
                      required=("content",)),
})
DOCUMENT_BLOCK: Final = fields({"source": _DOCUMENT_SOURCE, "title": string, "context": string,
                                "citations": any_object, "cache_control": CACHE_CONTROL}, required=("source",))
_TOOL_RESULT_CONTENT: Final = string_or_list(
    list_of(tagged({"text": TEXT_BLOCK, "image": IMAGE_BLOCK, "document": DOCUMENT_BLOCK})),
    "a string or a list of content blocks")
CONTENT_BLOCK: Final = tagged({
    "text": TEXT_BLOCK,
    "image": IMAGE_BLOCK,
    "document": DOCUMENT_BLOCK,
    "tool_use": fields({"id": string, "name": string, "input": any_object, "cache_control": CACHE_CONTROL},
                       required=("id", "name")),
    "server_tool_use": fields({"id": string, "name": string, "input": any_object}, required=("id", "name")),
    "tool_result": fields({"tool_use_id": string, "content": _TOOL_RESULT_CONTENT, "is_error": boolean,
                           "cache_control": CACHE_CONTROL}, required=("tool_use_id",)),
    "thinking": fields({"thinking": string, "signature": string}, required=("thinking",)),
    "redacted_thinking": fields({"data": string}, required=("data",)),
})
MESSAGE: Final = fields({
    "role": one_of(ANTHROPIC_ROLES),
    "content": string_or_list(list_of(CONTENT_BLOCK), "a string or a list"),
}, required=("role",))
SYSTEM: Final = string_or_list(list_of(tagged({"text": TEXT_BLOCK})), "a string or a list of text blocks")
TOOL: Final = both(
    fields({"name": string, "description": string, "input_schema": any_object, "cache_control": CACHE_CONTROL,
            "strict": boolean}),
    tagged({"custom": fields({}, required=("name",))}, default="custom"),
)
TOOL_CHOICE: Final = both(
    fields({"type": one_of({"auto", "any", "tool", "none"}), "name": string, "disable_parallel_tool_use": boolean},
           required=("type",)),
    tagged({"tool": fields({}, required=("name",))}),
)
THINKING: Final = both(fields({"type": string, "budget_tokens": integer}, required=("type",)),
                       tagged({"enabled": fields({}, required=("budget_tokens",))}))
_FORMAT: Final = fields({"type": string, "schema": any_object}, required=("type",))
COMMON: Final[tuple[tuple[str, Check], ...]] = (
    ("system", SYSTEM),
    ("tools", list_of(TOOL)),
    ("tool_choice", TOOL_CHOICE),
    ("thinking", THINKING),
    ("output_config", fields({"format": _FORMAT, "effort": string})),
    ("output_format", _FORMAT),
)
"""The fields a token count shares with a Messages request."""
GENERATION: Final[tuple[tuple[str, Check], ...]] = (
    ("max_tokens", positive_integer),
    ("stream", boolean),
    ("temperature", number),
    ("top_p", number),
    ("top_k", integer),
    ("stop_sequences", list_of(string)),
    ("metadata", fields({"user_id": string})),
    ("service_tier", string),
)
"""The fields only a Messages request has."""


def check_anthropic_fields(body: JSONObject, *, generation: bool) -> None:
    """Every known field of a Messages request (`generation`) or a token count, and every message."""
    for index, message in enumerate(body["messages"]):
        MESSAGE(message, f"messages.{index}")
    for key, check in (*COMMON, *GENERATION) if generation else COMMON:
        value = body.get(key)
        if value is not None:
            check(value, key)
