"""Pure routing decisions taken before and after a draft: which rule, which route, accept or escalate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from router.settings import CascadeRule
from router.types import JSONObject

FORCE_HEADER = "x-cascadeflow-force"
CACHE_HEADER = "x-cascadeflow-cache"
CONTROL_PREFIX = "x-cascadeflow-"

Route = Literal["pass_through", "strong", "draft"]


@dataclass(frozen=True)
class Control:
    """Per-request control headers: force a tier, or disable caching."""

    force: Literal["strong", "draft"] | None = None
    no_cache: bool = False

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Control:
        """Read `x-cascadeflow-force: strong|draft` and `x-cascadeflow-cache: off`."""
        force = headers.get(FORCE_HEADER, "").strip().lower()
        cache = headers.get(CACHE_HEADER, "").strip().lower()
        return cls(force=force if force in ("strong", "draft") else None,  # type: ignore[arg-type]
                   no_cache=cache in ("off", "no", "false", "0", "bypass"))


@dataclass(frozen=True)
class RouteDecision:
    """Where a request goes before any draft is seen, and why: its rule, its control headers, the route."""

    route: Route
    reason: str
    rule: CascadeRule | None = None
    control: Control = Control()


def find_rule(rules: Sequence[CascadeRule], model: str) -> CascadeRule | None:
    """The cascade rule selected by a requested model, if any."""
    return next((rule for rule in rules if rule.matches(model)), None)


def is_background_request(body: JSONObject, headers: Mapping[str, str]) -> bool:
    """Claude Code's background calls (title generation): no tools and a JSON output format."""
    if not headers.get("user-agent", "").startswith("claude-cli/"):
        return False
    output_config = body.get("output_config")
    wants_json = isinstance(output_config, dict) and isinstance(output_config.get("format"), dict)
    return not body.get("tools") and wants_json


def decide_route(rules: Sequence[CascadeRule], model: str, body: JSONObject,
                 headers: Mapping[str, str]) -> RouteDecision:
    """The rule step: the rule a model selects and the control headers (read before anything else, the cache
    included); pass-through without a rule; forced tiers; background requests straight to the strong model."""
    rule, control = find_rule(rules, model), Control.from_headers(headers)
    if rule is None:
        return RouteDecision("pass_through", "no cascade rule", None, control)
    if control.force is not None:
        return RouteDecision(control.force, f"forced by {FORCE_HEADER}", rule, control)
    if is_background_request(body, headers):
        return RouteDecision("strong", "background request", rule, control)
    return RouteDecision("draft", "cascade", rule, control)


def accept_draft(confidence: float, hard_fail: str | None, threshold: float, control: Control) -> bool:
    """Accept when the confidence reaches the threshold and nothing vetoed the draft (or the draft is forced)."""
    if control.force == "draft":
        return True
    return hard_fail is None and confidence >= threshold
