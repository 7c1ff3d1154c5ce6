"""Building the budgets of one proxy process from its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.budgets.admission import Budgets, SpendHistory
from router.budgets.core import BudgetCounters, MemoryBudgets
from router.budgets.estimate import CostEstimator
from router.costs import PriceBook
from router.metrics import Metrics
from router.providers.registry import ProviderRegistry
from router.settings import Settings

if TYPE_CHECKING:
    from router.storage.redis_health import RedisHealth


def build_budgets(settings: Settings, registry: ProviderRegistry, prices: PriceBook, metrics: Metrics,
                  history: SpendHistory | None = None, health: RedisHealth | None = None) -> Budgets:
    """Budgets counted in Redis when the rate limiter's counters are (shared by every replica; `health`, the
    limiter's too, bounds and judges the calls), else in this process; started from the persisted spend when
    there is a ledger to read."""
    auth = settings.auth
    url = auth.limiter_redis_url
    counters: BudgetCounters
    if url is None:
        counters = MemoryBudgets()
    else:
        from router.budgets.redis_budgets import RedisBudgets

        counters = RedisBudgets(url, auth.redis_prefix, health=health)
    estimator = CostEstimator(prices, registry, settings.cascade_rules, settings.model_info)
    return Budgets(counters, estimator, metrics, history=history)
