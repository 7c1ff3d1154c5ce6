"""Builds the semantic cache the settings ask for."""

from __future__ import annotations

from router.cache.scope import DEFAULT_SIMILARITY_THRESHOLD
from router.cache.semantic import SemanticCache
from router.embedding.encoder import DIMENSION
from router.settings import CacheSettings


def build_semantic_cache(settings: CacheSettings) -> SemanticCache:
    """The in-process cache (FAISS per scope, TTL, capacity)."""
    threshold = settings.similarity_threshold
    if threshold is None:
        threshold = DEFAULT_SIMILARITY_THRESHOLD
    return SemanticCache(dimension=DIMENSION, threshold=threshold, ttl_s=settings.ttl_s, capacity=settings.capacity)
