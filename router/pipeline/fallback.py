"""Fallback models: when the model that should answer fails before its answer began (after its retries, or at
once while its provider's circuit is open), the next of its fallback models answers instead.

A cascade rule's `fallback_models` stand in for its strong model; otherwise the `fallback_models` of the model
route that serves the model apply (pass-through too). Only failures another model need not share fall back:
408, 429, 5xx (529 included), connection failures, timeouts, undecodable answers and open circuits; any other
4xx is the request's own and is answered as it is.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from router.errors import ProxyError, UpstreamError, UpstreamStatusError
from router.metrics import Metrics
from router.pipeline.outcome import Plan
from router.providers.registry import ProviderRegistry
from router.providers.resilience import reason_of
from router.settings import CascadeRule

logger = logging.getLogger("router.pipeline.fallback")

FALLBACK_HEADER = "x-cascadeflow-fallback-model"


def falls_back(error: ProxyError) -> bool:
    """Whether the next fallback model is tried after this error."""
    if isinstance(error, UpstreamStatusError):
        return error.upstream_status in (408, 429) or error.upstream_status >= 500
    return isinstance(error, UpstreamError)


class Fallbacks:
    """Which models stand in for a failed one, and the bookkeeping when one does."""

    def __init__(self, registry: ProviderRegistry, metrics: Metrics) -> None:
        self._registry = registry
        self._metrics = metrics

    def models(self, model: str, rule: CascadeRule | None) -> list[str]:
        """The model, then its fallbacks in order (each once)."""
        fallbacks = rule.fallback_models if rule is not None and rule.fallback_models else (
            self._registry.fallback_models(model))
        return list(dict.fromkeys([model, *fallbacks]))

    def handed_over(self, plan: Plan, failed: str, error: ProxyError, fallback: str, request_id: str) -> Plan:
        """The plan once `fallback` takes over from `failed`: counted, logged, and said in its reason."""
        reason = reason_of(error) if isinstance(error, UpstreamError) else type(error).__name__
        self._metrics.inc("cascadeflow_fallbacks_total", model=fallback)
        logger.warning("request %s: %s failed (%s), falling back to %s", request_id, failed, reason, fallback)
        return replace(plan, reason=f"{plan.reason}; {failed} failed ({reason}), answered by fallback {fallback}")
