"""Verifier training rows from the proxy's outcome log: the feature row the verify step logged for each draft it
judged, the draft's label, and what the request really cost.

A row is a labelled record whose `verifier_features_version` is this code's VERIFIER_FEATURES_VERSION and whose
row has the length of VERIFIER_FEATURE_NAMES, with finite values; the others are left out and counted by why
(a request the router sent straight to the strong model, or one served without a draft, has no row; neither
has a record written by a proxy older than the column). The logged row is used as it is, never recomputed:
the token log-probabilities and the sample agreement in it cannot be rebuilt from text, and the log keeps no
text by default. Each row's id is its prompt hash (repeats of one prompt share a split and a fold group) and
its source `log/<draft model>`, so the log is a policy profile of its own, `log` (training/verifier_policy.py):
its pair of thresholds is chosen on real costs, never mixed with the estimates of the `routellm` and `local`
profiles, and a rule picks it with `verify: {profile: log}`.

Costs: the strong model's alone is the logged `strong_only_cost_usd` (the strong call's real cost when the draft
was escalated, else the strong model priced on the draft's tokens); the draft's is what the request cost, less
the strong call when it ran. Where the log has no price (a model without one), the token counts are priced as
the RouteLLM pair (training/policy_data.py). The router's P(good) at serving (`prediction`) joins the threshold
choice only for records routed by the router artifact the thresholds are chosen for (the same version).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION
from training.policy import Floats
from training.policy_data import LOGGED_DRAFT_COST, LOGGED_STRONG_COST, pair_prices

if TYPE_CHECKING:
    from router.storage.records import OutcomeRecord

PROFILE = "log"
LOGGED_FEATURES = "_logged_verifier_features"
"""The key under which a log row carries its logged feature row (the rows of data sets have none)."""
LOGGED_PREDICTION = "_logged_prediction"
LOGGED_ROUTER = "_logged_router_version"
_CREDENTIALS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")

Prices = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class LogRows:
    """One outcome log's training rows, and what the artifact's metadata says of it."""

    rows: list[dict[str, Any]]
    origin: dict[str, Any]


def public_url(url: str) -> str:
    """The log's URL without credentials: no user or password, no query (where a password may hide)."""
    return _CREDENTIALS.sub(r"\1", re.split(r"[?#]", url, maxsplit=1)[0])


def left_out_because(record: OutcomeRecord) -> str | None:
    """Why a labelled record cannot be trained on; None when it can."""
    row = record.verifier_features
    if row is None:
        return "no verifier feature row"
    if record.verifier_features_version != VERIFIER_FEATURES_VERSION:
        return f"features version {record.verifier_features_version}"
    if len(row) != len(VERIFIER_FEATURE_NAMES):
        return f"a row of {len(row)} features"
    if not all(math.isfinite(value) for value in row):
        return "non-finite features"
    return None


def logged_costs(record: OutcomeRecord, prices: Prices) -> tuple[float, float]:
    """(the draft's cost, the strong model's alone) in USD, as logged; priced as the RouteLLM pair when the log
    has no price."""
    escalated = record.accepted is False
    actual, strong = record.cost_usd, record.strong_only_cost_usd
    if actual is not None and strong is not None and strong > 0:
        return max(actual - strong if escalated else actual, 0.0), strong
    (d_in, d_out), (s_in, s_out) = prices
    tokens_in = float(record.draft_input_tokens or record.input_tokens or 0)
    draft_out = float(record.draft_output_tokens or 0)
    strong_out = float(record.output_tokens or 0) if escalated else draft_out
    return tokens_in * d_in + draft_out * d_out, tokens_in * s_in + strong_out * s_out


def row_of(record: OutcomeRecord, prices: Prices) -> dict[str, Any]:
    """The training row of a record that can be trained on."""
    draft_cost, strong_cost = logged_costs(record, prices)
    return {"id": record.prompt_sha256 or record.request_id,
            "source": f"{PROFILE}/{record.draft_model or record.requested_model}",
            "draft_good_enough": int(bool(record.label)), "label_source": record.label_source,
            LOGGED_FEATURES: tuple(record.verifier_features or ()), LOGGED_PREDICTION: record.prediction,
            LOGGED_ROUTER: record.artifact_version, LOGGED_DRAFT_COST: draft_cost, LOGGED_STRONG_COST: strong_cost}


def load_log_rows(url: str) -> LogRows:
    """The training rows of one outcome log (SQLite or PostgreSQL URL), and what was left out."""
    from router.storage import open_outcome_log

    async def fetch() -> list[OutcomeRecord]:
        return await open_outcome_log(url).query(labelled_only=True)

    records = [record for record in asyncio.run(fetch()) if record.label is not None]
    prices = pair_prices()
    kept = [record for record in records if left_out_because(record) is None]
    left_out = Counter(reason for record in records if (reason := left_out_because(record)) is not None)
    origin = {"path": public_url(url), "kind": "outcome_log", "sha256": None, "rows": len(kept),
              "label_sources": sorted({str(record.label_source) for record in kept}),
              "left_out": dict(sorted(left_out.items()))}
    return LogRows([row_of(record, prices) for record in kept], origin)


def logged_predictions(rows: Sequence[dict[str, Any]], router_version: str) -> Floats:
    """The router's P(good) at serving for log rows routed by this router artifact; NaN for the others."""
    return np.array([float(row[LOGGED_PREDICTION]) if row.get(LOGGED_ROUTER) == router_version
                     and row.get(LOGGED_PREDICTION) is not None else math.nan for row in rows], dtype=np.float64)


def describe(origin: dict[str, Any]) -> str:
    """One line of the report on a log's rows."""
    left_out = ", ".join(f"{count} {why}" for why, count in origin["left_out"].items()) or "none"
    return (f"- Outcome log {origin['path']}: {origin['rows']} rows (labels: "
            f"{', '.join(origin['label_sources']) or 'none'}); left out: {left_out}.")
