"""Admission of a keyed request against its budgets: the refusal in the client's dialect, the hold kept until the
record step settles it with the actual cost (or given back when the request ends without a ledger entry).

A refusal is a 429 in both dialects: both SDKs map 429 to their RateLimitError (402 would be a bare
APIStatusError), and it is what OpenAI itself answers for an exhausted quota (`insufficient_quota`). An
exhausted budget also sends `x-should-retry: false`, which both SDKs obey, so they do not retry a request that
cannot pass before the period resets (`retry-after` says when); a budget whose rest is held by requests in flight
is worth retrying in a moment, so that refusal lets the SDKs retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime

import orjson

from router.auth_keys.admission import KeyPrincipal
from router.budgets.core import BudgetCounters, BudgetRefusal, Hold, Periods, SpentTotal
from router.budgets.estimate import CostEstimator
from router.metrics import Metrics
from router.model_settings import ModelInfoTable
from router.settings import CascadeRule
from router.types import Answer, ClientCall, Dialect, Endpoint, JSONAnswer, StreamAnswer

logger = logging.getLogger("router.budgets")
SpendHistory = Callable[[Periods], Awaitable[list[SpentTotal]]]
"""The persisted spend per scope in the current day and month (the spend ledger's), to start counters from."""


def refusal_answer(call: ClientCall, refusal: BudgetRefusal, now: float) -> JSONAnswer:
    """The 429 in the client's dialect."""
    message = refusal.message()
    reset = datetime.fromtimestamp(refusal.resets_at, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    headers = {"content-type": "application/json", "retry-after": str(refusal.retry_after_s(now)),
               "x-cascadeflow-budget-reset": reset}
    exhausted = refusal.reason == "exhausted"
    if exhausted:
        headers["x-should-retry"] = "false"
    if call.dialect is Dialect.ANTHROPIC:
        headers["request-id"] = call.request_id
        body: dict[str, object] = {"type": "error", "error": {"type": "rate_limit_error", "message": message},
                                   "request_id": call.request_id}
    else:
        headers["x-request-id"] = call.request_id
        kind = "insufficient_quota" if exhausted else "rate_limit_error"
        body = {"error": {"message": message, "type": kind, "param": None,
                          "code": "insufficient_quota" if exhausted else "rate_limit_exceeded"}}
    return JSONAnswer(429, headers, orjson.dumps(body))


def _release_soon(loop: asyncio.AbstractEventLoop, hold: Hold) -> None:
    """A stream dropped without being read to its end: give its hold back on the loop."""
    if not hold.released and not loop.is_closed():
        loop.call_soon_threadsafe(hold.release)


def held_until_end(frames: AsyncIterator[bytes], hold: Hold) -> AsyncIterator[bytes]:
    """The frames of a stream, with the hold given back when it ends without being settled."""

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for frame in frames:
                yield frame
        finally:
            hold.release()
            close = getattr(frames, "aclose", None)
            if close is not None:
                await close()

    wrapper = relay()
    weakref.finalize(wrapper, _release_soon, asyncio.get_running_loop(), hold)
    return wrapper


class Budgets:
    """Holds each keyed request's worst-case cost against its budgets until its actual cost is known."""

    def __init__(self, counters: BudgetCounters, estimator: CostEstimator, metrics: Metrics, *,
                 history: SpendHistory | None = None, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self._estimator = estimator
        self._metrics = metrics
        self._history = history
        self._clock = clock

    def reconfigure(self, rules: Sequence[CascadeRule], model_info: ModelInfoTable | None) -> None:
        """Estimate the next admissions from reloaded cascade rules and `model_info` (router/reload.py)."""
        self._estimator.reconfigure(rules, model_info)

    async def start(self) -> None:
        """Start the counters from the persisted spend of today and this month (a failure is logged)."""
        if self._history is None:
            return
        periods = Periods.at(self._clock())
        try:
            totals = await self._history(periods)
            await self.counters.seed(totals, periods)
        except Exception as exc:  # a ledger that cannot be read leaves the counters at zero, it does not stop us
            logger.warning("budgets start from zero: the spend ledger could not be read: %s", exc)

    async def admitted(self, call: ClientCall, handle: Callable[[ClientCall], Awaitable[Answer]]) -> Answer:
        """The answer to a call, if its budgets admit it (a 429 otherwise, before anything is spent)."""
        principal = call.principal
        if not isinstance(principal, KeyPrincipal) or not principal.budgets or (
                call.endpoint is Endpoint.COUNT_TOKENS):  # a token count spends nothing
            return await handle(call)
        now = self._clock()
        decision = await self.counters.reserve(principal.budgets, self._estimator.estimate(call), Periods.at(now))
        if decision.refusal is not None or decision.hold is None:
            assert decision.refusal is not None
            refusal = decision.refusal
            self._metrics.inc("cascadeflow_budget_refusals_total", period=refusal.period, reason=refusal.reason,
                              scope=refusal.kind, tier=principal.tier or "none")
            return refusal_answer(call, refusal, now)
        hold = principal.slot.hold = decision.hold
        try:
            answer = await handle(call)
        except BaseException:
            hold.release()
            raise
        if isinstance(answer, StreamAnswer):
            answer.frames = held_until_end(answer.frames, hold)
        else:
            hold.release()
        return answer

    async def close(self) -> None:
        """Finish settlements and close connections."""
        await self.counters.close()
