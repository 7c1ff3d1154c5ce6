"""Value types of draft scoring: the evidence in, the components and the confidence score out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from router.types import JSONObject


def clamp01(value: float) -> float:
    """The value clipped to [0, 1]; NaN becomes 0."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


@dataclass(frozen=True)
class Component:
    """One measurement of a draft: value in [0, 1] (1 = confident), its weight, and a readable detail.

    ``fatal`` marks a hard failure (truncation, empty output, invalid JSON or tool call): it forces
    escalation whatever the weighted value of the other components.
    """

    name: str
    value: float
    weight: float
    detail: str
    fatal: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The component as a JSON-ready dict."""
        out: dict[str, Any] = {
            "name": self.name,
            "value": round(self.value, 4),
            "weight": self.weight,
            "detail": self.detail,
        }
        if self.fatal:
            out["fatal"] = True
        return out


@dataclass(frozen=True)
class ConfidenceScore:
    """The combined confidence of a draft: 0.0 with ``hard_fail`` set when a fatal component vetoed it."""

    value: float
    components: tuple[Component, ...]
    hard_fail: str | None = None

    @property
    def accepted_by_gates(self) -> bool:
        """True when no hard failure vetoed the draft."""
        return self.hard_fail is None

    def component(self, name: str) -> Component | None:
        """The component with this name, if it was measured."""
        return next((c for c in self.components if c.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """The score as a JSON-ready dict for logs and headers."""
        return {
            "value": round(self.value, 4),
            "hard_fail": self.hard_fail,
            "components": [c.as_dict() for c in self.components],
        }


@dataclass(frozen=True)
class DraftEvidence:
    """Everything known about one draft: the hub request, the complete draft answer, optional token logprobs.

    ``logprobs`` are natural-log probabilities of the generated tokens, when the provider returned them;
    ``predicted_good`` is the learned router's P(draft good enough), when a prediction was made;
    ``agreement`` is the share of extra samples of the draft whose final answer agrees with it, when sampled.
    """

    request: JSONObject
    answer: JSONObject
    logprobs: tuple[float, ...] | None = None
    predicted_good: float | None = None
    agreement: float | None = None
