"""The request being served, in a context variable: its id for every log line, its stages' timings and spans,
and what the pipeline reports about it (the caller, the call, the outcome) for the request's one log line.

The middleware (router/observability/middleware.py) sets a `RequestRecord` for each HTTP request; the
pipeline reports into it with the functions below, which do nothing outside a request (background work, unit
tests of a step). A context variable rather than an argument: the stages sit deep in the pipeline's steps and
asyncio copies the context into every task a request starts, streams included.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from router.pipeline.outcome import Outcome
    from router.types import ClientCall, Principal

Attribute = str | int | float | bool


class StageTracer(Protocol):
    """Opens a child span of the request's span (router/observability/tracing.py)."""

    def stage(self, name: str, attributes: dict[str, Attribute]) -> AbstractContextManager[object]:
        """A span for one stage, current while it runs."""
        ...


@dataclass
class RequestRecord:
    """One HTTP request as the operator sees it; filled while it is served, logged when it ends."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    tracer: StageTracer | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)
    principal: Principal | None = None
    call: ClientCall | None = None
    route: str | None = None
    outcome: Outcome | None = None
    status: int | None = None
    first_byte_ms: float | None = None
    complete: bool = False
    upstream_request_id: str | None = None

    def elapsed_ms(self) -> float:
        """Milliseconds since the request arrived."""
        return (time.perf_counter() - self.started) * 1000.0

    def stage(self, name: str, attributes: dict[str, Attribute]) -> AbstractContextManager[object]:
        """Time a stage (added up when it runs more than once) and trace it when tracing is on."""
        return _Stage(self, name, attributes)


class _Stage:
    """One stage of a request while it runs: its clock, and its span when tracing is on."""

    __slots__ = ("_attributes", "_name", "_record", "_span", "_started")

    def __init__(self, record: RequestRecord, name: str, attributes: dict[str, Attribute]) -> None:
        self._record, self._name, self._attributes = record, name, attributes
        self._span: AbstractContextManager[object] | None = None
        self._started = 0.0

    def __enter__(self) -> None:
        tracer = self._record.tracer
        if tracer is not None:
            self._span = tracer.stage(self._name, self._attributes)
            self._span.__enter__()
        self._started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        stages, elapsed = self._record.stages_ms, (time.perf_counter() - self._started) * 1000.0
        stages[self._name] = stages.get(self._name, 0.0) + elapsed
        if self._span is not None:
            self._span.__exit__(kind, error, traceback)


_CURRENT: ContextVar[RequestRecord | None] = ContextVar("cascadeflow_request", default=None)
_OUTSIDE = nullcontext()


def begin(record: RequestRecord) -> Token[RequestRecord | None]:
    """Make `record` the current request (the middleware, at arrival)."""
    return _CURRENT.set(record)


def end(token: Token[RequestRecord | None]) -> None:
    """Restore the context the request arrived in."""
    _CURRENT.reset(token)


def current() -> RequestRecord | None:
    """The request being served, if any."""
    return _CURRENT.get()


def current_request_id() -> str | None:
    """The id of the request being served, if any."""
    record = _CURRENT.get()
    return record.request_id if record is not None else None


def stage(name: str, **attributes: Attribute) -> AbstractContextManager[object]:
    """A pipeline stage of the current request: timed for its log line, a span when tracing is on."""
    record = _CURRENT.get()
    return _OUTSIDE if record is None else record.stage(name, attributes)


def note_principal(principal: Principal) -> None:
    """The authenticated caller (its tenant and key id are logged; never its key)."""
    record = _CURRENT.get()
    if record is not None:
        record.principal = principal


def note_call(call: ClientCall, route: str) -> None:
    """A call that ends without an outcome (a token count)."""
    record = _CURRENT.get()
    if record is not None:
        record.call, record.route = call, route


def note_outcome(outcome: Outcome) -> None:
    """The request's one outcome (route, models, ledger entry), from the record step."""
    record = _CURRENT.get()
    if record is not None:
        record.outcome, record.call, record.route = outcome, outcome.call, outcome.plan.route
