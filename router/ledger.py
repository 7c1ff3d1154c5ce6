"""The one ledger: every request's cost entry, priced from the model that really answered.

Every path ends in one `LedgerEntry`: pass-through, JSON or stream, an accepted or escalated draft (with the
draft's wasted cost), a skipped draft, a cache hit, a failure and a client that hung up (with what was spent
before it). Background spend (exploration, grading) is an entry of its own kind. Response headers, metrics,
the outcome log and budgets all read the entry; nothing else prices a request.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router.costs import PriceBook, TokenUsage
from router.metrics import Metrics

if TYPE_CHECKING:
    from router.settings import Settings

logger = logging.getLogger("router.ledger")
_UNLABELLED = 1024  # names remembered as `other` (no glob match again); more are matched each time
_WARNED_LIMIT = 256
OTHER_MODEL = "other"
"""The model label of a model the configuration neither names nor matches, or past the caps below."""
MAX_MATCHED_MODELS = 64
"""How many distinct names one process labels because a glob pattern matches them (`claude-*`); later ones are
`other`, so clients choosing model names cannot grow the metrics without bound."""
MAX_LABEL_CHARS = 100
"""A longer model name matched by a pattern alone is `other`."""


@dataclass(frozen=True)
class MetricModels:
    """What may be a model label: the names the configuration spells out, and the names its glob patterns match
    (at most MAX_MATCHED_MODELS of those per process)."""

    names: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()

    def matches(self, model: str) -> bool:
        """Whether a glob pattern of the configuration matches the name (also without its `provider/` prefix)."""
        bare = model.partition("/")[2] if "/" in model else None
        return any(fnmatch.fnmatchcase(model, pattern) or (bare is not None and fnmatch.fnmatchcase(bare, pattern))
                   for pattern in self.patterns)


@dataclass(frozen=True)
class Charge:
    """One upstream call: the model that answered (as the provider knows it), its tokens and their price."""

    model: str
    usage: TokenUsage
    usd: float
    priced: bool


@dataclass(frozen=True)
class LedgerEntry:
    """What one request cost, what the strong model alone would have cost, and the draft spend thrown away."""

    served: Charge | None = None
    wasted_draft: Charge | None = None
    strong_only_usd: float | None = None
    strong_only_model: str | None = None
    """The model `strong_only_usd` was priced on."""

    @property
    def actual_usd(self) -> float:
        """Everything spent: the served answer plus a rejected draft."""
        return (self.served.usd if self.served else 0.0) + (self.wasted_draft.usd if self.wasted_draft else 0.0)

    @property
    def wasted_usd(self) -> float:
        """The rejected draft's cost."""
        return self.wasted_draft.usd if self.wasted_draft else 0.0

    @property
    def saved_usd(self) -> float | None:
        """Strong-only minus actual (negative when an escalation wasted a draft); None when unknown."""
        return None if self.strong_only_usd is None else self.strong_only_usd - self.actual_usd

    @property
    def priced(self) -> bool:
        """Whether every model involved had a price (an unknown one counts as 0)."""
        return all(charge.priced for charge in (self.served, self.wasted_draft) if charge is not None)

    def headers(self) -> dict[str, str]:
        """The X-CascadeFlow cost headers."""
        headers = {"x-cascadeflow-actual-cost": f"{self.actual_usd:.8f}"}
        if self.strong_only_usd is not None:
            headers["x-cascadeflow-original-cost"] = f"{self.strong_only_usd:.8f}"
            headers["x-cascadeflow-cost-saved"] = f"{self.strong_only_usd - self.actual_usd:.8f}"
        if self.wasted_draft is not None:
            headers["x-cascadeflow-draft-cost-wasted"] = f"{self.wasted_usd:.8f}"
        return headers


class Ledger:
    """Prices calls and posts entries to the metrics."""

    def __init__(self, prices: PriceBook, metrics: Metrics, models: MetricModels | Iterable[str] = ()) -> None:
        """`models`: what the metrics may carry as a model label (`metric_models`; or plain names)."""
        self._prices = prices
        self._metrics = metrics
        self._models = _metric_models(models)
        self._matched: set[str] = set()
        self._labelled: set[str] = set()  # names a pattern of the current configuration matched: no new match
        self._unlabelled: set[str] = set()  # names the current configuration labels `other` (at most _UNLABELLED)
        self._warned: set[str] = set()

    @property
    def prices(self) -> PriceBook:
        """The price book every entry is priced from (shared with the budgets)."""
        return self._prices

    def reconfigure(self, models: MetricModels | Iterable[str]) -> None:
        """Label the metrics by these names and patterns from now on (a reloaded config); names a pattern matched
        before still count towards MAX_MATCHED_MODELS (their series exist)."""
        self._models = _metric_models(models)
        self._labelled, self._unlabelled = set(), set()

    def model_label(self, model: str | None) -> str:
        """A model's label in the metrics: its name when the configuration names it, or when one of its glob
        patterns matches it (the first MAX_MATCHED_MODELS such names of the process), else `other`."""
        if model is None:
            return OTHER_MODEL
        if model in self._models.names or model in self._labelled:
            return model
        if model in self._unlabelled:
            return OTHER_MODEL
        if len(model) > MAX_LABEL_CHARS or not self._models.matches(model) or (
                model not in self._matched and len(self._matched) >= MAX_MATCHED_MODELS):
            if len(self._unlabelled) < _UNLABELLED:
                self._unlabelled.add(model)
            return OTHER_MODEL
        if model not in self._matched:
            self._matched.add(model)
        self._labelled.add(model)
        return model

    def charge(self, model: str, usage: TokenUsage | None, provider: str | None = None) -> Charge | None:
        """The price of one call's usage on the model that answered (None without usage)."""
        if usage is None:
            return None
        cost = self._prices.cost(model, usage, provider)
        if not cost.known and model not in self._warned and len(self._warned) < _WARNED_LIMIT:
            self._warned.add(model)
            logger.warning("no price for model %r: its calls are counted at 0 USD", model)
        return Charge(model, usage, cost.usd, cost.known)

    def post(self, entry: LedgerEntry, kind: str = "request") -> None:
        """Count an entry in the metrics: spend (actual, original, wasted draft) and tokens."""
        if kind != "request":
            self._metrics.inc("cascadeflow_cost_usd_total", entry.actual_usd, kind=kind)
            return
        self._metrics.inc("cascadeflow_cost_usd_total", entry.actual_usd, kind="actual")
        if entry.strong_only_usd is not None:
            self._metrics.inc("cascadeflow_cost_usd_total", entry.strong_only_usd, kind="original")
        if entry.wasted_draft is not None:
            self._metrics.inc("cascadeflow_cost_usd_total", entry.wasted_usd, kind="wasted_draft")
        for tier, charge in (("served", entry.served), ("draft_wasted", entry.wasted_draft)):
            if charge is not None:
                self._metrics.inc("cascadeflow_tokens_total", charge.usage.input_tokens, tier=tier, kind="input")
                self._metrics.inc("cascadeflow_tokens_total", charge.usage.output_tokens, tier=tier, kind="output")
                self._post_model(charge)
        if entry.strong_only_usd is not None:
            self._metrics.inc("cascadeflow_model_cost_usd_total", entry.strong_only_usd, kind="original",
                              model=self.model_label(entry.strong_only_model))

    def _post_model(self, charge: Charge) -> None:
        """One call's tokens and spend on the model that answered."""
        model = self.model_label(charge.model)
        self._metrics.inc("cascadeflow_model_tokens_total", charge.usage.input_tokens, kind="input", model=model)
        self._metrics.inc("cascadeflow_model_tokens_total", charge.usage.output_tokens, kind="output", model=model)
        self._metrics.inc("cascadeflow_model_cost_usd_total", charge.usd, kind="actual", model=model)


def _metric_models(models: MetricModels | Iterable[str]) -> MetricModels:
    return models if isinstance(models, MetricModels) else MetricModels(frozenset(models))


def metric_models(settings: Settings) -> MetricModels:
    """Every model name the configuration spells out (routes, their upstream names, rules, fallbacks, the grader,
    `model_info`), also without a `provider/` prefix, and its glob patterns (of routes and `model_info`)."""
    names = [settings.labels.grader_model, *settings.model_info]
    for route in settings.models:
        names += [route.match, route.upstream_model, *route.fallback_models]
    for rule in settings.cascade_rules:
        names += [rule.request_model, rule.draft_model, rule.verifier_model, *rule.fallback_models]
    given = {name for name in names if name}
    patterns = {name for name in given if any(char in name for char in "*?[")}
    plain = given - patterns
    return MetricModels(frozenset(plain | {name.partition("/")[2] for name in plain if "/" in name}),
                        tuple(sorted(patterns)))
