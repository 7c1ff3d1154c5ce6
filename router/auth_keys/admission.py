"""Admission of a keyed request against its rate limits: the 429 in the client's dialect, the rate-limit
headers, the concurrency slot held until the answer ends, and the token estimate settled by the real usage."""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from router.auth_keys.limits import Decision, Limiter, Scope, Ticket, Window
from router.budgets.core import BudgetScope, Hold
from router.protocol.tokens import estimate_input_tokens
from router.types import Answer, ClientCall, Dialect, Endpoint, JSONAnswer, Principal, StreamAnswer

if TYPE_CHECKING:
    from router.ledger import LedgerEntry


@dataclass
class TicketSlot:
    """Where a request's admission ticket and budget hold are kept, for the record step to settle."""

    ticket: Ticket | None = None
    hold: Hold | None = None


@dataclass(frozen=True, repr=False)
class KeyPrincipal(Principal):
    """A caller identified by a proxy key: its key id, user, tier, the scopes whose limits and budgets it is held
    to, and whether it may read everyone's usage."""

    key_id: str = ""
    user: str = ""
    tier: str | None = None
    scopes: tuple[Scope, ...] = ()
    budgets: tuple[BudgetScope, ...] = ()
    admin: bool = False
    slot: TicketSlot = field(default_factory=TicketSlot, compare=False)


def estimated_tokens(call: ClientCall) -> int:
    """The input tokens a request is charged on admission (a token count is charged none)."""
    if call.endpoint is Endpoint.COUNT_TOKENS:
        return 0
    body = call.body
    if call.dialect is Dialect.OPENAI_RESPONSES:
        body = {"system": body.get("instructions"), "messages": body.get("input"), "tools": body.get("tools")}
    return estimate_input_tokens(body)


def spent_tokens(entry: LedgerEntry) -> int:
    """The tokens a request really used upstream: the served answer's and a thrown-away draft's."""
    return sum(charge.usage.input_tokens + charge.usage.output_tokens
               for charge in (entry.served, entry.wasted_draft) if charge is not None)


def settle_usage(principal: Principal, entry: LedgerEntry) -> None:
    """Replace a keyed request's token estimate by its real usage, and its budget hold by its actual cost (the
    record step calls this once)."""
    if isinstance(principal, KeyPrincipal) and principal.slot.ticket is not None:
        principal.slot.ticket.settle(spent_tokens(entry))
    if isinstance(principal, KeyPrincipal) and principal.slot.hold is not None:
        principal.slot.hold.settle(entry.actual_usd)


def _duration(seconds: float) -> str:
    """OpenAI's reset format: `20ms`, `6s`, `1m30s`."""
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _instant(seconds: float) -> str:
    """Anthropic's reset format: the RFC 3339 time the window is whole again."""
    moment = datetime.fromtimestamp(time.time() + seconds, tz=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def rate_limit_headers(dialect: Dialect, decision: Decision) -> dict[str, str]:
    """The dialect's rate-limit headers for the tightest request and token windows (and retry-after when
    refused)."""
    headers: dict[str, str] = {}
    windows: list[tuple[str, Window]] = [(name, window) for name, window in
                                         (("requests", decision.requests), ("tokens", decision.tokens))
                                         if window is not None]
    for name, window in windows:
        if dialect is Dialect.ANTHROPIC:
            headers[f"anthropic-ratelimit-{name}-limit"] = str(window.limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(window.remaining)
            headers[f"anthropic-ratelimit-{name}-reset"] = _instant(window.reset_s)
        else:
            headers[f"x-ratelimit-limit-{name}"] = str(window.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(window.remaining)
            headers[f"x-ratelimit-reset-{name}"] = _duration(window.reset_s)
    if not decision.allowed:
        headers["retry-after"] = str(max(1, math.ceil(decision.retry_after_s)))
    return headers


def refusal(call: ClientCall, decision: Decision) -> JSONAnswer:
    """The 429 in the client's dialect."""
    message = decision.reason or "rate limit reached"
    headers = {"content-type": "application/json", **rate_limit_headers(call.dialect, decision)}
    if call.dialect is Dialect.ANTHROPIC:
        headers["request-id"] = call.request_id
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": message},
                "request_id": call.request_id}
    else:
        headers["x-request-id"] = call.request_id
        body = {"error": {"message": message, "type": "rate_limit_error", "param": None,
                          "code": "rate_limit_exceeded"}}
    return JSONAnswer(429, headers, orjson.dumps(body))


def _release_soon(loop: asyncio.AbstractEventLoop, ticket: Ticket) -> None:
    """A stream dropped without being read to its end: give its slots back on the loop."""
    if not ticket.released and not loop.is_closed():
        loop.call_soon_threadsafe(ticket.release)


def held(frames: AsyncIterator[bytes], ticket: Ticket) -> AsyncIterator[bytes]:
    """The frames of a stream, with the ticket's slots given back when it ends, fails or is dropped."""

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for frame in frames:
                yield frame
        finally:
            ticket.release()
            close = getattr(frames, "aclose", None)
            if close is not None:
                await close()

    wrapper = relay()
    weakref.finalize(wrapper, _release_soon, asyncio.get_running_loop(), ticket)
    return wrapper


async def admitted(limiter: Limiter, call: ClientCall, handle: Callable[[ClientCall], Awaitable[Answer]],
                   on_refused: Callable[[KeyPrincipal, Decision], object] | None = None) -> Answer:
    """The answer to a call, if its key's limits admit it (a 429 otherwise, before anything is sent upstream;
    `on_refused` hears of it)."""
    principal = call.principal
    if not isinstance(principal, KeyPrincipal) or not principal.scopes:
        return await handle(call)
    decision = await limiter.acquire(principal.scopes, estimated_tokens(call))
    if not decision.allowed or decision.ticket is None:
        if on_refused is not None:
            on_refused(principal, decision)
        return refusal(call, decision)
    ticket = principal.slot.ticket = decision.ticket
    try:
        answer = await handle(call)
    except BaseException:
        ticket.release()
        raise
    answer.headers.update(rate_limit_headers(call.dialect, decision))
    if isinstance(answer, StreamAnswer):
        answer.frames = held(answer.frames, ticket)
    else:
        ticket.release()
    return answer
