"""Process metrics: labelled counters and latency sums, rendered in the Prometheus text format."""

from __future__ import annotations

from collections.abc import Mapping

Labels = tuple[tuple[str, str], ...]

HELP = {
    "cascadeflow_requests_total": "Client requests by endpoint and route taken.",
    "cascadeflow_cache_lookups_total": "Semantic cache lookups by result (hit, miss, skipped, error).",
    "cascadeflow_drafts_total": "Drafts by outcome (accepted, escalated, failed).",
    "cascadeflow_dependency_errors_total": "Dependency failures (cache, log, classifier) that degraded service.",
    "cascadeflow_cost_usd_total": "Spend in USD (actual) and what the strong model alone would have cost (original).",
    "cascadeflow_router_predictions_total": "Learned router predictions, by whether the draft was skipped.",
    "cascadeflow_router_predict_seconds_total": "Time spent in learned router predictions.",
    "cascadeflow_router_artifact_loads_total": "Router artifacts loaded (start-up and hot reloads).",
    "cascadeflow_router_artifact_refusals_total": "Router artifacts refused (mismatched or corrupt).",
    "cascadeflow_outcomes_total": "Outcome records by result (queued, dropped).",
    "cascadeflow_labels_total": "Labels of live traffic by how they were obtained and their value.",
    "cascadeflow_explorations_total": "Background calls made to label requests, by tier and result.",
}


class Metrics:
    """Counters kept by one process; no global registry."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, Labels], float] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        key = (name, tuple(sorted(labels.items())))
        self._counters[key] = self._counters.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float:
        """A counter's value (0 when never incremented)."""
        return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self, gauges: Mapping[str, float] | None = None) -> str:
        """The Prometheus exposition text."""
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), amount in sorted(self._counters.items()):
            if name not in seen:
                seen.add(name)
                lines.append(f"# HELP {name} {HELP.get(name, name)}")
                lines.append(f"# TYPE {name} counter")
            label_text = ",".join(f'{key}="{value}"' for key, value in labels)
            lines.append(f"{name}{{{label_text}}} {_number(amount)}" if label_text else f"{name} {_number(amount)}")
        for name, amount in sorted((gauges or {}).items()):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {_number(amount)}")
        return "\n".join(lines) + "\n"


def _number(amount: float) -> str:
    """A sample value at full precision (spend in USD must add up; `%g` would keep six digits)."""
    return str(int(amount)) if float(amount).is_integer() and abs(amount) < 2**53 else repr(float(amount))
