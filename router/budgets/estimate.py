"""What a request may cost at most, held against its budgets on admission.

The estimate prices the request's estimated input tokens as prompt-cache writes (the dearest input tokens) and
its output at `max_tokens` (or the model's output limit when the request sets none), on every model that may
answer it: the draft and the strong model of a cascade rule, else the requested model. A token count costs
nothing. An unpriced model costs 0 here as in the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

from router.auth_keys.admission import estimated_tokens
from router.costs import PriceBook, TokenUsage
from router.errors import ProxyError
from router.model_settings import ModelInfoTable
from router.policy.capabilities import capabilities_of
from router.providers.registry import ProviderRegistry
from router.settings import CascadeRule
from router.types import ClientCall, Endpoint, JSONObject

_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def requested_output(body: JSONObject) -> int | None:
    """The output limit a request sets, in any dialect's field."""
    for name in _OUTPUT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class CostEstimator:
    """Worst-case USD of a call, from the same price book as the ledger."""

    def __init__(self, prices: PriceBook, registry: ProviderRegistry, rules: Sequence[CascadeRule],
                 model_info: ModelInfoTable | None = None) -> None:
        self._prices = prices
        self._registry = registry
        self._rules = tuple(rules)
        self._model_info = model_info

    def reconfigure(self, rules: Sequence[CascadeRule], model_info: ModelInfoTable | None) -> None:
        """Estimate from reloaded cascade rules and `model_info` output limits (the price book and the registry are
        reloaded in place)."""
        self._rules, self._model_info = tuple(rules), model_info

    def estimate(self, call: ClientCall) -> float:
        """The most the call may cost (0 for a token count)."""
        if call.endpoint is Endpoint.COUNT_TOKENS:
            return 0.0
        rule = next((rule for rule in self._rules if rule.matches(call.model)), None)
        models = (rule.draft_model, rule.strong_model) if rule is not None else (call.model,)
        tokens = estimated_tokens(call)
        return sum(self._worst_case(call, model, tokens) for model in models)

    def _worst_case(self, call: ClientCall, model: str, tokens: int) -> float:
        try:
            target = self._registry.resolve(model, call.dialect)
        except ProxyError:
            return 0.0
        output = requested_output(call.body) or (
            capabilities_of(target.upstream_model, self._model_info).max_output_tokens)
        usage = TokenUsage(input_tokens=tokens, output_tokens=output, cache_write_tokens=tokens)
        return self._prices.cost(target.upstream_model, usage, target.provider.name).usd
