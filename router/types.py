"""Neutral value types shared across the router."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

JSONObject = dict[str, Any]
"""A decoded JSON object as it travels on the wire."""


class Dialect(enum.StrEnum):
    """The API dialect a client speaks or a provider serves."""

    ANTHROPIC = "anthropic"
    OPENAI_CHAT = "openai_chat"
    OPENAI_RESPONSES = "openai_responses"


class Endpoint(enum.StrEnum):
    """The client-facing operations that reach a provider."""

    MESSAGES = "messages"
    COUNT_TOKENS = "count_tokens"
    CHAT = "chat"
    RESPONSES = "responses"


def client_family(dialect: Dialect) -> Literal["anthropic", "openai"]:
    """The provider kind whose native dialect a client speaks."""
    return "anthropic" if dialect is Dialect.ANTHROPIC else "openai"


AuthMode = Literal["pass_through", "proxy_key"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant id that is safe to log, and the client's key headers to forward if allowed."""

    tenant: str
    mode: AuthMode
    credential_headers: tuple[tuple[str, str], ...] = ()
    own_key_only: bool = False
    """Its forwarded key is the only one it may spend: a provider's configured key never serves it (hybrid)."""

    def __repr__(self) -> str:
        return f"Principal(tenant={self.tenant!r}, mode={self.mode!r})"


@dataclass(frozen=True)
class ClientCall:
    """One authenticated, parsed and validated client request."""

    dialect: Dialect
    endpoint: Endpoint
    body: JSONObject
    raw_body: bytes
    headers: Mapping[str, str]
    query: str
    principal: Principal
    request_id: str

    @property
    def model(self) -> str:
        """The model the client asked for ("" before validation found none)."""
        model = self.body.get("model")
        return model if isinstance(model, str) else ""

    @property
    def stream(self) -> bool:
        """Streaming is decided by the body (Claude Code sends Accept: application/json while streaming)."""
        return self.body.get("stream") is True


@dataclass
class JSONAnswer:
    """A complete answer in the client's dialect."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class StreamAnswer:
    """A streaming answer in the client's dialect: SSE frames, relayed as they are produced."""

    status: int
    headers: dict[str, str]
    frames: AsyncIterator[bytes]


Answer = JSONAnswer | StreamAnswer
