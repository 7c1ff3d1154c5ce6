"""The dashboard's numbers: one pass over outcome records (pure: no I/O, no clock), in UTC time buckets.

Savings are counted as the spend ledger counts them: the strong-only cost minus the actual cost, where a request
whose strong-only cost is unknown (a failure) counts at its actual cost. The quality the savings cost is estimated
from exploration labels: of the served drafts that the strong model also answered in the background, the share
whose answer the strong one agreed with, with a Wilson score interval (95%).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from router.dashboard.decisions import RuleThresholds, decision_json
from router.spend.records import UsageRow
from router.storage.records import OutcomeRecord

Z_95 = 1.959963984540054
HOUR_S, DAY_S = 3600.0, 86400.0
ROUTES = ("cache", "draft", "escalated", "strong", "pass_through", "failed")
LATEST = 50
DraftPrice = Callable[[str, int, int], float | None]
"""The USD price of a draft's input and output tokens on a model; None when unknown."""


def wilson(agreed: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of the proportion agreed / n; None when n is 0."""
    if n <= 0:
        return None
    p, z2 = agreed / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(part: float, whole: float) -> float | None:
    """part / whole, None when there is no whole."""
    return part / whole if whole else None


@dataclass(frozen=True)
class Window:
    """The time shown: `since` (a bucket start) to `until`, in buckets of `bucket_s` seconds aligned to UTC."""

    since: float
    until: float
    bucket_s: float

    @classmethod
    def last(cls, days: int, now: float) -> Window:
        """The last `days` days up to `now`: hourly buckets up to two days, daily ones beyond (whole UTC days)."""
        bucket = HOUR_S if days <= 2 else DAY_S
        count = round(days * DAY_S / bucket)
        return cls(math.floor(now / bucket) * bucket - (count - 1) * bucket, now, bucket)

    @property
    def starts(self) -> list[float]:
        """Each bucket's start."""
        count = max(1, math.floor((self.until - self.since) / self.bucket_s) + 1)
        return [self.since + index * self.bucket_s for index in range(count)]

    def index(self, moment: float, count: int) -> int | None:
        """The bucket of a moment (a moment after `until` goes in the last one); None before `since`."""
        if moment < self.since:
            return None
        return min(int((moment - self.since) // self.bucket_s), count - 1)


@dataclass
class Share:
    """Labelled drafts, and how many of them the strong model's answer agreed with."""

    n: int = 0
    agreed: int = 0

    def add(self, good: bool) -> None:
        """Count one label."""
        self.n += 1
        self.agreed += int(good)

    def to_json(self) -> dict[str, Any]:
        """The share with its 95% Wilson interval (nulls without labels)."""
        interval = wilson(self.agreed, self.n)
        return {"n": self.n, "agreed": self.agreed, "share": rate(self.agreed, self.n),
                "low": interval[0] if interval else None, "high": interval[1] if interval else None}


@dataclass
class Money:
    """Requests and what they cost, actually and had the strong model answered them all."""

    requests: int = 0
    actual_usd: float = 0.0
    strong_only_usd: float = 0.0

    def add(self, record: OutcomeRecord) -> None:
        """Count one request."""
        actual = record.cost_usd or 0.0
        self.requests += 1
        self.actual_usd += actual
        self.strong_only_usd += actual if record.strong_only_cost_usd is None else record.strong_only_cost_usd

    def to_json(self) -> dict[str, Any]:
        """The sums and the savings."""
        saved = self.strong_only_usd - self.actual_usd
        return {"requests": self.requests, "actual_usd": self.actual_usd, "strong_only_usd": self.strong_only_usd,
                "saved_usd": saved, "saved_share": rate(saved, self.strong_only_usd)}


@dataclass
class Tally:
    """The counts of a time bucket, or of the whole window."""

    money: Money = field(default_factory=Money)
    routes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    cache_hits: int = 0
    cascade: int = 0
    drafts: int = 0
    accepted: int = 0
    served: Share = field(default_factory=Share)

    def add(self, record: OutcomeRecord) -> None:
        """Count one request."""
        self.money.add(record)
        self.routes[record.route] = self.routes.get(record.route, 0) + 1
        self.cache_hits += int(record.cache_hit)
        self.cascade += int(record.draft_model is not None and not record.cache_hit)
        if record.accepted is not None:
            self.drafts += 1
            self.accepted += int(record.accepted)
        if record.route == "draft" and record.label is not None:
            self.served.add(record.label)

    def to_json(self) -> dict[str, Any]:
        """Counts and rates: cache hits of all requests, acceptance and escalation of the drafts judged, the strong
        model straight away (the draft skipped) of the cascade's requests."""
        requests = self.money.requests
        return {**self.money.to_json(), "routes": dict(self.routes),
                "cache_hits": self.cache_hits, "cache_hit_rate": rate(self.cache_hits, requests),
                "cascade_requests": self.cascade, "drafts": self.drafts, "accepted": self.accepted,
                "acceptance_rate": rate(self.accepted, self.drafts),
                "escalated": self.routes.get("escalated", 0),
                "escalation_rate": rate(self.routes.get("escalated", 0), self.drafts),
                "strong_direct_rate": rate(self.routes.get("strong", 0), self.cascade),
                "quality": self.served.to_json()}


@dataclass
class RuleQuality:
    """One cascade rule (by the model name that selects it): its drafts and their labels."""

    draft_model: str | None = None
    strong_model: str | None = None
    requests: int = 0
    served_drafts: int = 0
    served: Share = field(default_factory=Share)
    escalated: Share = field(default_factory=Share)

    def to_json(self, rule: str) -> dict[str, Any]:
        """The rule's row."""
        return {"rule": rule, "draft_model": self.draft_model, "strong_model": self.strong_model,
                "requests": self.requests, "served_drafts": self.served_drafts,
                "explored_share": rate(self.served.n, self.served_drafts),
                "served": self.served.to_json(), "escalated": self.escalated.to_json()}


@dataclass
class ModelSpend:
    """What one model cost: the answers it served, and its drafts thrown away on escalation."""

    served_usd: float = 0.0
    rejected_draft_usd: float = 0.0
    answers: int = 0

    def to_json(self, model: str) -> dict[str, Any]:
        """The model's row."""
        return {"model": model, "usd": self.served_usd + self.rejected_draft_usd, "served_usd": self.served_usd,
                "rejected_draft_usd": self.rejected_draft_usd, "answers": self.answers}


def spend_parts(record: OutcomeRecord, draft_price: DraftPrice | None) -> list[tuple[str, float, bool]]:
    """A request's cost split by model: (model, USD, whether it is a draft thrown away). A served draft is the
    draft model's; after an escalation the draft's tokens, when priced, are the draft model's and the rest the
    strong model's; without a cascade rule it is all the requested model's."""
    cost = record.cost_usd or 0.0
    if cost <= 0.0:
        return []
    if record.draft_model is None:
        return [(record.requested_model, cost, False)]
    if record.route == "draft":
        return [(record.draft_model, cost, False)]
    served_model = record.strong_model or record.requested_model
    tokens = record.draft_input_tokens or 0, record.draft_output_tokens or 0
    price = draft_price(record.draft_model, *tokens) if draft_price is not None and any(tokens) else None
    wasted = min(max(price or 0.0, 0.0), cost)
    parts = [(record.draft_model, wasted, True)] if wasted > 0.0 else []
    return parts + ([(served_model, cost - wasted, False)] if cost - wasted > 0.0 else [])


class Summary:
    """The fold: `add` every record of the window (any order), then `to_json`."""

    def __init__(self, window: Window, *, draft_price: DraftPrice | None = None,
                 thresholds: Mapping[str, RuleThresholds] | None = None, show_content: bool = False,
                 latest: int = LATEST) -> None:
        self.window = window
        self._starts = window.starts
        self._draft_price = draft_price
        self._thresholds = dict(thresholds or {})
        self._show_content = show_content
        self._latest_count = latest
        self.total = Tally()
        self.buckets = [Tally() for _ in self._starts]
        self.models: dict[str, ModelSpend] = {}
        self.rules: dict[str, RuleQuality] = {}
        self.tenants: dict[str, Money] = {}
        self.skipped = Share()
        self._latest: list[tuple[float, int, OutcomeRecord]] = []
        self._added = 0

    def add(self, record: OutcomeRecord) -> None:
        """Count one record (one before the window is ignored)."""
        index = self.window.index(record.created_at, len(self.buckets))
        if index is None:
            return
        self._added += 1
        self.total.add(record)
        self.buckets[index].add(record)
        self.tenants.setdefault(record.tenant, Money()).add(record)
        for model, usd, wasted in spend_parts(record, self._draft_price):
            spend = self.models.setdefault(model, ModelSpend())
            if wasted:
                spend.rejected_draft_usd += usd
            else:
                spend.served_usd += usd
                spend.answers += 1
        if record.draft_model is not None and not record.cache_hit:
            self._add_rule(record)
        entry = (record.created_at, self._added, record)
        if len(self._latest) < self._latest_count:
            heapq.heappush(self._latest, entry)
        elif self._latest and entry[:2] > self._latest[0][:2]:
            heapq.heapreplace(self._latest, entry)

    def _add_rule(self, record: OutcomeRecord) -> None:
        rule = self.rules.setdefault(record.requested_model, RuleQuality())
        rule.draft_model, rule.strong_model = record.draft_model, record.strong_model
        rule.requests += 1
        rule.served_drafts += int(record.route == "draft")
        if record.label is None:
            return
        if record.route == "draft":
            rule.served.add(record.label)
        elif record.route == "escalated":
            rule.escalated.add(record.label)
        elif record.route == "strong":
            self.skipped.add(record.label)

    def to_json(self) -> dict[str, Any]:
        """Totals, the series, spend by model and tenant, quality per rule, and the latest decisions."""
        cumulative = 0.0
        series = []
        for start, bucket in zip(self._starts, self.buckets, strict=True):
            point = bucket.to_json()
            cumulative += point["saved_usd"]
            series.append({"t": start, **point, "cumulative_saved_usd": cumulative})
        served = self.total.served
        escalated = Share(sum(r.escalated.n for r in self.rules.values()),
                          sum(r.escalated.agreed for r in self.rules.values()))
        latest = sorted(self._latest, reverse=True)
        return {
            "window": {"since": self.window.since, "until": self.window.until, "bucket_s": self.window.bucket_s},
            "totals": self.total.to_json(),
            "series": series,
            "spend_by_model": sorted((spend.to_json(model) for model, spend in self.models.items()),
                                     key=lambda row: (-row["usd"], row["model"])),
            "spend_by_tenant": sorted(({"user": tenant, **money.to_json()} for tenant, money in self.tenants.items()),
                                      key=lambda row: (-row["actual_usd"], row["user"])),
            "quality": {
                "confidence": 0.95, "served": served.to_json(), "escalated": escalated.to_json(),
                "skipped": self.skipped.to_json(),
                "explored_share": rate(served.n, self.total.routes.get("draft", 0)),
                "by_rule": sorted((rule.to_json(name) for name, rule in self.rules.items()),
                                  key=lambda row: (-row["served_drafts"], row["rule"])),
            },
            "decisions": [decision_json(record, self._thresholds, show_content=self._show_content)
                          for _, _, record in latest],
        }


def spend_by_user(rows: Iterable[UsageRow]) -> list[dict[str, Any]]:
    """The spend ledger's rows (grouped by day and user) summed per user, the costliest first; a caller without
    a user (no proxy key) is shown by its tenant."""
    users: dict[str, Money] = {}
    for row in rows:
        money = users.setdefault(row.user if row.user is not None else str(row.tenant), Money())
        money.requests += row.requests
        money.actual_usd += row.actual_usd
        money.strong_only_usd += row.strong_only_usd
    return sorted(({"user": user, **money.to_json()} for user, money in users.items()),
                  key=lambda row: (-row["actual_usd"], row["user"]))
