"""Structural checks that keep a bad request from ever reaching a provider; unknown fields are allowed."""

from __future__ import annotations

from typing import Any

from router.errors import InvalidRequestError
from router.types import ClientCall, Endpoint, JSONObject

ANTHROPIC_ROLES = frozenset({"user", "assistant", "system"})
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _require_model(body: JSONObject) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model: Field required (a non-empty string)", param="model")


def _check_messages(messages: Any, roles: frozenset[str], *, allow_empty: bool = False) -> None:
    if not isinstance(messages, list):
        raise InvalidRequestError("messages: Field required (a list)", param="messages")
    if not messages and not allow_empty:
        raise InvalidRequestError("messages: at least one message is required", param="messages")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where}: must be an object", param=where)
        if message.get("role") not in roles:
            raise InvalidRequestError(
                f"{where}.role: must be one of {', '.join(sorted(roles))}", param=f"{where}.role"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequestError(f"{where}.content: must be a string or a list", param=f"{where}.content")
        if isinstance(content, list):
            for part_index, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    path = f"{where}.content.{part_index}"
                    raise InvalidRequestError(f"{path}: must be an object with a type", param=path)


def _check_positive_int(body: JSONObject, key: str, *, required: bool) -> None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidRequestError(f"{key}: Field required", param=key)
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{key}: must be a positive integer", param=key)


def _check_stream(body: JSONObject) -> None:
    if "stream" in body and not isinstance(body["stream"], bool | None):
        raise InvalidRequestError("stream: must be a boolean", param="stream")


def _check_tools(body: JSONObject) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequestError("tools: must be a list", param="tools")


def validate_anthropic_messages(body: JSONObject) -> None:
    """A Messages API request (`POST /v1/messages`)."""
    _require_model(body)
    _check_messages(body.get("messages"), ANTHROPIC_ROLES)
    _check_positive_int(body, "max_tokens", required=True)
    _check_stream(body)
    _check_tools(body)
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequestError("system: must be a string or a list of text blocks", param="system")


def validate_anthropic_count_tokens(body: JSONObject) -> None:
    """A token-count request (`POST /v1/messages/count_tokens`)."""
    _require_model(body)
    _check_messages(body.get("messages"), ANTHROPIC_ROLES)
    _check_tools(body)


def validate_chat(body: JSONObject) -> None:
    """A Chat Completions request (`POST /v1/chat/completions`)."""
    _require_model(body)
    _check_messages(body.get("messages"), CHAT_ROLES)
    _check_positive_int(body, "max_tokens", required=False)
    _check_positive_int(body, "max_completion_tokens", required=False)
    _check_stream(body)
    _check_tools(body)


def validate_responses(body: JSONObject) -> None:
    """A Responses API request (`POST /v1/responses`)."""
    _require_model(body)
    value = body.get("input")
    if not isinstance(value, str | list):
        raise InvalidRequestError("input: Field required (a string or a list of items)", param="input")
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidRequestError(f"input.{index}: must be an object", param=f"input.{index}")
    _check_positive_int(body, "max_output_tokens", required=False)
    _check_stream(body)
    _check_tools(body)


def validate_call(call: ClientCall) -> None:
    """The request body of a call, checked by its endpoint (InvalidRequestError names the field)."""
    validators = {Endpoint.MESSAGES: validate_anthropic_messages, Endpoint.CHAT: validate_chat,
                  Endpoint.COUNT_TOKENS: validate_anthropic_count_tokens, Endpoint.RESPONSES: validate_responses}
    validators[call.endpoint](call.body)
