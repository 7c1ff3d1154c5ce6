"""The values the pipeline's steps return, and the one immutable Outcome a request ends in."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from router.costs import TokenUsage
from router.ledger import LedgerEntry
from router.providers.wire import Completion
from router.settings import CascadeRule
from router.types import ClientCall, JSONObject

if TYPE_CHECKING:
    from router.learned import Prediction
    from router.pipeline.cache import CacheLookup
    from router.scoring import ConfidenceScore

Route = Literal["cache", "pass_through", "draft", "escalated", "strong", "failed"]
DraftStatus = Literal["accepted", "rejected", "failed", "skipped"]


@dataclass(frozen=True)
class Clock:
    """When a request arrived (wall time for records, a monotonic clock for latencies)."""

    created_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)

    def elapsed_ms(self) -> float:
        """Milliseconds since arrival."""
        return (time.perf_counter() - self.started) * 1000.0


@dataclass(frozen=True)
class RequestFeatures:
    """What the prediction step knows of a request: its embedding, structural features and the prediction."""

    vector: NDArray[np.float32] | None = None
    structural: tuple[float, ...] | None = None
    prediction: Prediction | None = None


@dataclass(frozen=True)
class Request:
    """One call on its way through: what every step after the cache step reads."""

    call: ClientCall
    clock: Clock
    hub: JSONObject | None
    lookup: CacheLookup | None = None
    features: RequestFeatures = RequestFeatures()


@dataclass(frozen=True)
class DraftRun:
    """A draft that ran: its complete answer (or why it failed), its cost and how long it took."""

    model: str
    provider: str
    completion: Completion | None
    latency_ms: float
    failure: str | None = None
    agreement: float | None = None  # the share of extra samples whose final answer agrees with it
    samples_usage: TokenUsage | None = None  # what the extra samples cost (paid as draft cost)

    @property
    def usage(self) -> TokenUsage | None:
        """Everything the draft used: its answer and its extra samples."""
        answer = self.completion.usage if self.completion is not None else None
        if answer is None or self.samples_usage is None:
            return answer or self.samples_usage
        return answer + self.samples_usage


@dataclass(frozen=True)
class Verdict:
    """The verify step's decision about a complete draft."""

    score: ConfidenceScore
    accepted: bool
    reason: str
    verifier_features: tuple[float, ...] | None = None
    """The draft's verifier feature row (router/scoring/evidence.py), when a trained verifier judged it or the
    outcome log keeps it: numbers only, no text."""


@dataclass(frozen=True)
class Plan:
    """Where the request goes and why: the route chosen before the answer is served."""

    route: Route
    reason: str
    rule: CascadeRule | None = None
    draft: DraftRun | None = None
    verdict: Verdict | None = None
    draft_status: DraftStatus | None = None

    def headers(self) -> dict[str, str]:
        """The X-CascadeFlow routing headers of a cascade rule's answer."""
        if self.rule is None:
            return {}
        headers = {"x-cascadeflow-route": self.route, "x-cascadeflow-draft-model": self.rule.draft_model,
                   "x-cascadeflow-strong-model": self.rule.strong_model,
                   "x-cascadeflow-draft-accepted": _ACCEPTED_HEADER[self.draft_status or "skipped"]}
        if self.verdict is not None:
            headers["x-cascadeflow-confidence"] = f"{self.verdict.score.value:.4f}"
        return headers


_ACCEPTED_HEADER = {"accepted": "true", "rejected": "false", "failed": "failed", "skipped": "skipped"}


@dataclass
class Progress:
    """How far a request has got, the one mutable value of a request: what its record says (and what it had spent)
    when it is cancelled before its answer began (its client hung up, or the server stopped waiting for it)."""

    request: Request
    plan: Plan
    stage: str = "routing"


@dataclass(frozen=True)
class Outcome:
    """Everything that happened to one request, once it is over (answer complete, failed, or abandoned)."""

    call: ClientCall
    clock: Clock
    plan: Plan
    hub_request: JSONObject | None
    features: RequestFeatures
    ledger: LedgerEntry
    served: Completion | None = None
    status: int = 200
    error: str | None = None
    cache_hit: bool = False
    latency_ms: float = 0.0
