"""Scope before similarity: what must be identical for a cached answer to be served, and what is never cached."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from router.cache.guard import guard_terms
from router.embedding.text import turn_text
from router.types import JSONObject

DEFAULT_SIMILARITY_THRESHOLD = 0.92
"""Cosine similarity of the last turn, within one scope, from which a cached answer is served."""

BILLING_PREFIX = "x-anthropic-billing-header:"
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "stop_sequences", "tool_choice", "output_config", "thinking")
_CACHE_MARKERS = frozenset({"cache_control"})
_VOLATILE_IN_HISTORY = frozenset({"cache_control", "signature", "id", "tool_use_id"})


@dataclass(frozen=True)
class CacheScope:
    """The digest of everything but the last turn that an answer depends on."""

    key: str


def _canonical(value: Any, drop: frozenset[str] = _CACHE_MARKERS) -> Any:
    """Drop what changes between equivalent requests (cache markers; in the history also signatures and ids)."""
    if isinstance(value, dict):
        return {k: _canonical(v, drop) for k, v in sorted(value.items()) if k not in drop}
    if isinstance(value, list):
        return [_canonical(item, drop) for item in value]
    return value


def _system_parts(request: JSONObject) -> list[Any]:
    system = request.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    kept = [block for block in blocks if not (isinstance(block, dict)
                                              and str(block.get("text", "")).startswith(BILLING_PREFIX))]
    messages = request.get("messages") or []
    inline = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    return [_canonical(kept), _canonical(inline)]


def _digest(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _conversation(request: JSONObject) -> list[JSONObject]:
    return [m for m in request.get("messages") or [] if isinstance(m, dict) and m.get("role") != "system"]


def cache_scope(*, tenant: str, model: str, request: JSONObject) -> CacheScope:
    """Tenant, model, system prompt (without Claude Code's per-request billing line), tools, sampling, history,
    and the numbers and polarity words of the last turn (router/cache/guard.py)."""
    conversation = _conversation(request)
    history = conversation[:-1]
    guard = guard_terms(turn_text(conversation[-1].get("content"))) if conversation else ()
    sampling = {key: _canonical(request.get(key)) for key in SAMPLING_KEYS if request.get(key) is not None}
    return CacheScope(_digest(tenant, model, _system_parts(request), _canonical(request.get("tools") or []),
                              sampling, _canonical(history, _VOLATILE_IN_HISTORY), guard))


def exact_key(scope: CacheScope, request: JSONObject) -> str:
    """The scope plus the exact last turn: identical requests meet here without FAISS."""
    conversation = _conversation(request)
    last = conversation[-1].get("content") if conversation else None
    return _digest(scope.key, turn_text(last))


def uncacheable_reason(request: JSONObject, *, allow_sampled: bool = False) -> str | None:
    """Why a request may neither be served from nor stored in the cache (None when it may)."""
    conversation = _conversation(request)
    if not conversation or conversation[-1].get("role") != "user":
        return "the last turn is not a user turn"
    content = conversation[-1].get("content")
    if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
        return "the request carries tool results"
    if not turn_text(content):
        return "no user text"
    temperature = request.get("temperature")
    greedy = isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0
    if not allow_sampled and not greedy:  # unset means the provider's default: sampling at temperature 1
        return "the client did not ask for temperature 0 (sampled answers differ)"
    return None


def unstorable_reason(answer: JSONObject) -> str | None:
    """Why an answer must never be served again (None when it may be cached)."""
    if answer.get("type") == "error":
        return "error"
    content = answer.get("content") or []
    if any(isinstance(block, dict) and block.get("type") == "tool_use" for block in content):
        return "the answer calls tools"
    if answer.get("stop_reason") in ("max_tokens", "refusal", "model_context_window_exceeded"):
        return f"stop reason {answer.get('stop_reason')}"
    if not any(isinstance(block, dict) and block.get("type") == "text" and block.get("text") for block in content):
        return "no text"
    return None
