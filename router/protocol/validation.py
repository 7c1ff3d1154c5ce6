"""Checks that keep a bad request from ever reaching a provider (or the pipeline): unknown fields are allowed.

Every field the proxy reads is checked for its JSON type at any depth before the body is used, so a malformed
request is a 400 naming the field's path (`messages.0.role`), never an error further on. The per-dialect field
checks live in anthropic_validation, chat_validation and responses_validation.
"""

from __future__ import annotations

from typing import Any

from router.errors import InvalidRequestError
from router.protocol.anthropic_validation import ANTHROPIC_ROLES, check_anthropic_fields
from router.protocol.chat_validation import CHAT_ROLES, check_chat_fields
from router.protocol.checks import positive_integer, require
from router.protocol.responses_validation import check_responses_fields
from router.types import ClientCall, Endpoint, JSONObject

__all__ = ["ANTHROPIC_ROLES", "CHAT_ROLES", "validate_anthropic_count_tokens", "validate_anthropic_messages",
           "validate_call", "validate_chat", "validate_responses"]


def _require_model(body: JSONObject) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        require("model", " (a non-empty string)")


def _require_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        require("messages", " (a list)")
    if not messages:
        raise InvalidRequestError("messages: at least one message is required", param="messages")


def validate_anthropic_messages(body: JSONObject) -> None:
    """A Messages API request (`POST /v1/messages`)."""
    _require_model(body)
    _require_messages(body.get("messages"))
    if body.get("max_tokens") is None:
        require("max_tokens")
    positive_integer(body["max_tokens"], "max_tokens")
    check_anthropic_fields(body, generation=True)


def validate_anthropic_count_tokens(body: JSONObject) -> None:
    """A token-count request (`POST /v1/messages/count_tokens`)."""
    _require_model(body)
    _require_messages(body.get("messages"))
    check_anthropic_fields(body, generation=False)


def validate_chat(body: JSONObject) -> None:
    """A Chat Completions request (`POST /v1/chat/completions`)."""
    _require_model(body)
    _require_messages(body.get("messages"))
    check_chat_fields(body)


def validate_responses(body: JSONObject) -> None:
    """A Responses API request (`POST /v1/responses`)."""
    _require_model(body)
    if not isinstance(body.get("input"), str | list):
        require("input", " (a string or a list of items)")
    check_responses_fields(body)


def validate_call(call: ClientCall) -> None:
    """The request body of a call, checked by its endpoint (InvalidRequestError names the field)."""
    validators = {Endpoint.MESSAGES: validate_anthropic_messages, Endpoint.CHAT: validate_chat,
                  Endpoint.COUNT_TOKENS: validate_anthropic_count_tokens, Endpoint.RESPONSES: validate_responses}
    validators[call.endpoint](call.body)
