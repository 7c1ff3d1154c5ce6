"""The latest decisions as the dashboard lists them: route, models, the router's and the verifier's probabilities
against their thresholds, and the reason; prompt text and label details only when content logging is on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from router.storage.records import OutcomeRecord

if TYPE_CHECKING:
    from router.settings import Settings
    from router.verifier import Verifier

PROMPT_CHARS = 300
_BELOW = re.compile(r"confidence -?[0-9.]+ below (-?[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)")


@dataclass(frozen=True)
class RuleThresholds:
    """A cascade rule's accept thresholds in the running config: the hand-weighted score's and the verifier's."""

    quality: float
    verifier: float | None = None


def rule_thresholds(settings: Settings, verifier: Verifier | None) -> dict[str, RuleThresholds]:
    """The running accept thresholds per requested model that selects a rule (`request_model`, `cascade/<name>`)."""
    artifact = verifier.artifact if verifier is not None else None
    thresholds: dict[str, RuleThresholds] = {}
    for rule in settings.cascade_rules:
        learned = verifier.threshold_of(artifact, rule.verify.profile) \
            if verifier is not None and artifact is not None else None
        current = RuleThresholds(rule.quality_threshold, learned)
        for name in (rule.request_model, f"cascade/{rule.name}" if rule.name else None):
            if name is not None:
                thresholds.setdefault(name, current)
    return thresholds


def accept_threshold(record: OutcomeRecord, current: Mapping[str, RuleThresholds]) -> tuple[float | None, str | None]:
    """The threshold a draft's confidence was held to, and where it comes from: the decision's own reason
    (an escalation names it), else the running config's ("current"); (None, None) when no draft was judged."""
    if record.confidence is None:
        return None, None
    found = _BELOW.search(record.reason)
    if found is not None:
        return float(found.group(1)), "decision"
    rule = current.get(record.requested_model)
    if rule is None:
        return None, None
    if "verifier" in record.components and rule.verifier is not None:
        return rule.verifier, "current"
    return rule.quality, "current"


def decision_json(record: OutcomeRecord, current: Mapping[str, RuleThresholds], *,
                  show_content: bool) -> dict[str, Any]:
    """One row of the latest decisions."""
    threshold, threshold_from = accept_threshold(record, current)
    row: dict[str, Any] = {
        "time": record.created_at, "request_id": record.request_id, "tenant": record.tenant,
        "endpoint": record.endpoint, "requested_model": record.requested_model, "route": record.route,
        "reason": record.reason, "draft_model": record.draft_model, "strong_model": record.strong_model,
        "cache_hit": record.cache_hit, "accepted": record.accepted,
        "router_p_good": record.prediction, "skip_threshold": record.skip_threshold,
        "router_version": record.artifact_version,
        "confidence": record.confidence, "verifier_p_good": record.components.get("verifier"),
        "accept_threshold": threshold, "accept_threshold_from": threshold_from,
        "cost_usd": record.cost_usd, "strong_only_cost_usd": record.strong_only_cost_usd,
        "latency_ms": record.latency_ms, "label": record.label, "label_source": record.label_source,
    }
    if show_content:
        row["label_detail"] = record.label_detail
        row["prompt"] = record.prompt_text[:PROMPT_CHARS] if record.prompt_text else None
    return row
