"""The cache step: control headers and the rule first, then an exact match, and only then an embedding."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import orjson
from numpy.typing import NDArray

from router.cache.scope import cache_scope, exact_key, uncacheable_reason, unstorable_reason
from router.cache.semantic import CacheHit, SemanticCache
from router.embedding.encoder import Encoder
from router.embedding.text import embedding_text
from router.metrics import Metrics
from router.observability.context import stage
from router.settings import CacheSettings, CascadeRule
from router.types import ClientCall, JSONObject

logger = logging.getLogger("router.pipeline.cache")


@dataclass(frozen=True)
class CacheLookup:
    """A lookup: the keys to remember the answer under, the request's vector (when embedded), the hit if any."""

    scope: str
    key: str
    vector: NDArray[np.float32] | None = None
    hit: JSONObject | None = None
    similarity: float = 0.0
    exact: bool = False


class CacheStep:
    """The semantic cache, for the rules (or the whole proxy) that opted in."""

    def __init__(self, encoder: Encoder, cache: SemanticCache, metrics: Metrics, settings: CacheSettings) -> None:
        self._encoder = encoder
        self._cache = cache
        self._metrics = metrics
        self._settings = settings

    def reconfigure(self, settings: CacheSettings) -> None:
        """Look up with reloaded settings (the threshold and sampling rule; the rest needs a restart)."""
        self._settings = settings

    def wanted(self, rule: CascadeRule | None) -> bool:
        """Whether requests under this rule (None: without a rule) use the cache."""
        if rule is not None and rule.semantic_cache is not None:
            return rule.semantic_cache
        return self._settings.enabled

    async def lookup(self, call: ClientCall, hub_request: JSONObject, rule: CascadeRule | None) -> CacheLookup | None:
        """Look the request up; None when it may not be cached at all (or the encoder failed)."""
        sampled = rule.cache_sampled if rule is not None and rule.cache_sampled is not None else (
            self._settings.allow_sampled)
        if uncacheable_reason(hub_request, allow_sampled=sampled) is not None:
            self._metrics.inc("cascadeflow_cache_lookups_total", result="skipped")
            return None
        scope = cache_scope(tenant=call.principal.tenant, model=call.model, request=hub_request)
        key = exact_key(scope, hub_request)
        exact = self._cache.lookup_exact(key)
        if exact is not None:
            return self._hit(scope.key, key, None, exact)
        try:
            with stage("embed"), self._metrics.timer("cascadeflow_embedding_duration_seconds", step="cache"):
                vector = await self._encoder.embed(embedding_text(hub_request))
        except Exception:  # an encoder failure degrades to no cache, never a failed request
            logger.exception("embedding failed; serving without the cache")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="encoder")
            return None
        threshold = rule.semantic_threshold if rule is not None else None
        threshold = threshold if threshold is not None else self._settings.similarity_threshold
        try:
            with self._metrics.timer("cascadeflow_cache_lookup_duration_seconds"):
                similar = await self._cache.lookup_similar(scope.key, vector, threshold)
        except Exception:  # a cache failure degrades to a miss, never a failed request
            logger.exception("cache lookup failed; serving without the cache")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="cache")
            return CacheLookup(scope.key, key, vector)
        if similar is None:
            self._metrics.inc("cascadeflow_cache_lookups_total", result="miss")
            return CacheLookup(scope.key, key, vector)
        return self._hit(scope.key, key, vector, similar)

    def _hit(self, scope: str, key: str, vector: NDArray[np.float32] | None, hit: CacheHit) -> CacheLookup:
        try:
            message = orjson.loads(hit.entry.payload)
        except orjson.JSONDecodeError:
            self._metrics.inc("cascadeflow_cache_lookups_total", result="error")
            return CacheLookup(scope, key, vector)
        self._metrics.inc("cascadeflow_cache_lookups_total", result="hit")
        return CacheLookup(scope, key, vector, message, hit.similarity, hit.exact)

    async def remember(self, lookup: CacheLookup, message: JSONObject | None, model: str) -> None:
        """Store a complete answer unless it must never be served again (tools, truncation, errors)."""
        if message is None or lookup.vector is None or unstorable_reason(message) is not None:
            return
        usage = message.get("usage") or {}
        meta = {"model": model, "output_tokens": str(usage.get("output_tokens", 0))}
        await self._cache.remember(lookup.scope, lookup.key, lookup.vector, orjson.dumps(message), meta)
