"""Builds the semantic cache the settings ask for."""

from __future__ import annotations

from pathlib import Path

from router.cache.scope import DEFAULT_SIMILARITY_THRESHOLD
from router.cache.semantic import SemanticCache
from router.embedding.encoder import DIMENSION
from router.settings import CacheSettings


def build_semantic_cache(settings: CacheSettings) -> SemanticCache:
    """The cache: FAISS per scope, TTL, capacity and byte budget; shared through Redis in `redis` mode."""
    threshold = settings.similarity_threshold
    if threshold is None:
        threshold = DEFAULT_SIMILARITY_THRESHOLD
    share = None
    if settings.mode == "redis":
        from router.cache.shared import RedisShare

        share = RedisShare(settings.redis_url, settings.redis_prefix, settings.capacity)
    return SemanticCache(dimension=DIMENSION, threshold=threshold, ttl_s=settings.ttl_s, capacity=settings.capacity,
                         max_bytes=settings.max_bytes, share=share,
                         directory=Path(settings.directory) if settings.directory else None)
