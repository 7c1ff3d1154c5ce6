"""The cache step of the pipeline: embed once, scope, look up; remember complete, storable answers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import orjson
from numpy.typing import NDArray

from router.cache.scope import (
    DEFAULT_SIMILARITY_THRESHOLD,
    cache_scope,
    exact_key,
    uncacheable_reason,
    unstorable_reason,
)
from router.cache.semantic import SemanticCache
from router.embedding.encoder import Encoder
from router.embedding.text import embedding_text
from router.metrics import Metrics
from router.types import ClientCall, JSONObject

logger = logging.getLogger("router.caching")


@dataclass(frozen=True)
class CacheProbe:
    """The result of a lookup: the key material to remember the answer under, and the hit if any."""

    scope: str
    key: str
    vector: NDArray[np.float32]
    hit_message: JSONObject | None = None
    similarity: float = 0.0
    exact: bool = False


class CacheLayer:
    """Semantic cache in front of every cacheable request."""

    def __init__(self, encoder: Encoder, cache: SemanticCache, metrics: Metrics, *,
                 threshold: float | None, allow_sampled: bool) -> None:
        self._encoder = encoder
        self._cache = cache
        self._metrics = metrics
        self._threshold = threshold if threshold is not None else DEFAULT_SIMILARITY_THRESHOLD
        self._allow_sampled = allow_sampled

    async def probe(self, call: ClientCall, hub_request: JSONObject, threshold: float | None) -> CacheProbe | None:
        """Look the request up; None when it may not be cached at all (or the cache failed)."""
        reason = uncacheable_reason(hub_request, allow_sampled=self._allow_sampled)
        if reason is not None:
            self._metrics.inc("cascadeflow_cache_lookups_total", result="skipped")
            return None
        try:
            vector = await self._encoder.embed(embedding_text(hub_request))
        except Exception:  # an encoder failure degrades to no cache, never a failed request
            logger.exception("embedding failed; serving without the cache")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="encoder")
            return None
        scope = cache_scope(tenant=call.principal.tenant, model=call.model, request=hub_request)
        key = exact_key(scope, hub_request)
        try:
            hit = await self._cache.lookup(scope.key, key, vector, threshold or self._threshold)
        except Exception:  # a cache failure degrades to a miss, never a failed request
            logger.exception("cache lookup failed; serving without the cache")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="cache")
            return CacheProbe(scope.key, key, vector)
        if hit is None:
            self._metrics.inc("cascadeflow_cache_lookups_total", result="miss")
            return CacheProbe(scope.key, key, vector)
        try:
            message = orjson.loads(hit.entry.payload)
        except orjson.JSONDecodeError:
            self._metrics.inc("cascadeflow_cache_lookups_total", result="error")
            return CacheProbe(scope.key, key, vector)
        self._metrics.inc("cascadeflow_cache_lookups_total", result="hit")
        return CacheProbe(scope.key, key, vector, message, hit.similarity, hit.exact)

    async def remember(self, probe: CacheProbe, message: JSONObject | None, model: str) -> None:
        """Store a complete answer unless it must never be served again (tools, truncation, errors)."""
        if message is None or unstorable_reason(message) is not None:
            return
        usage = message.get("usage") or {}
        meta = {"model": model, "output_tokens": str(usage.get("output_tokens", 0))}
        await self._cache.remember(probe.scope, probe.key, probe.vector, orjson.dumps(message), meta)
