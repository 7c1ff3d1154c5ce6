"""Scope before similarity, what is never cached, and the in-process semantic cache."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from router.cache.scope import cache_scope, exact_key, uncacheable_reason, unstorable_reason
from router.cache.semantic import SemanticCache

BASE: dict[str, Any] = {
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1.abc;"},
               {"type": "text", "text": "You are helpful.", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "Read", "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}}}],
    "messages": [{"role": "user", "content": "Tell me about Obama."},
                 {"role": "assistant", "content": [{"type": "text", "text": "He was president."}]},
                 {"role": "user", "content": [{"type": "text", "text": "how old is he?",
                                               "cache_control": {"type": "ephemeral"}}]}],
}


def scope_of(request: dict[str, Any], tenant: str = "t1", model: str = "m") -> str:
    return cache_scope(tenant=tenant, model=model, request=request).key


def variant(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_volatile_parts_do_not_change_the_scope() -> None:
    billing = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.zzz;"}, BASE["system"][1]]
    moved_marker = [BASE["messages"][0], BASE["messages"][1], {"role": "user", "content": "how old is he?"}]
    assert scope_of(variant(system=billing)) == scope_of(BASE)
    assert scope_of(variant(messages=moved_marker)) == scope_of(BASE)
    assert exact_key(cache_scope(tenant="t1", model="m", request=variant(messages=moved_marker)),
                     variant(messages=moved_marker)) == exact_key(cache_scope(tenant="t1", model="m", request=BASE),
                                                                    BASE)


@pytest.mark.parametrize("other", [
    {"tenant": "t2"},
    {"model": "other-model"},
    {"request": variant(system="You are terse.")},
    {"request": variant(tools=[])},
    {"request": variant(temperature=0.0, top_p=0.5)},
    {"request": variant(messages=[{"role": "user", "content": "Tell me about Biden."}, *BASE["messages"][1:]])},
    {"request": variant(messages=[*BASE["messages"][:2], {"role": "system", "content": "Answer in French."},
                                  BASE["messages"][2]])},
])
def test_anything_the_answer_depends_on_changes_the_scope(other: dict[str, Any]) -> None:
    assert scope_of(other.get("request", BASE), other.get("tenant", "t1"), other.get("model", "m")) != scope_of(BASE)


def test_what_is_never_cached() -> None:
    tool_turn = variant(messages=[*BASE["messages"][:2], {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "42"}]}])
    assert uncacheable_reason(tool_turn) is not None
    assert uncacheable_reason(variant(temperature=0.9)) is not None
    assert uncacheable_reason(variant(temperature=0.9), allow_sampled=True) is None
    assert uncacheable_reason(variant(temperature=0)) is None
    assert uncacheable_reason({k: v for k, v in BASE.items() if k != "temperature"}) is not None, "unset = sampled"
    answer = {"type": "message", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn"}
    assert unstorable_reason(answer) is None
    assert unstorable_reason({**answer, "stop_reason": "max_tokens"}) is not None
    assert unstorable_reason({**answer, "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}]})
    assert unstorable_reason({"type": "error", "error": {}}) is not None


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_semantic_cache_exact_similar_scope_ttl_capacity() -> None:
    async def scenario() -> None:
        cache = SemanticCache(dimension=384, threshold=0.9, ttl_s=60, capacity=3)
        base = unit(1)
        await cache.remember("s1", "k1", base, b"answer-1", {})
        assert (hit := await cache.lookup("s1", "k1", unit(99))) is not None and hit.exact
        near = base + 0.1 * unit(2)
        near /= np.linalg.norm(near)
        hit = await cache.lookup("s1", "other", near.astype(np.float32))
        assert hit is not None and not hit.exact and hit.similarity > 0.9 and hit.entry.payload == b"answer-1"
        assert await cache.lookup("s1", "other", unit(3)) is None, "dissimilar"
        assert await cache.lookup("s2", "other", base) is None, "another scope never matches"
        for i in range(3):
            await cache.remember("s3", f"e{i}", unit(10 + i), b"x", {})
        assert await cache.lookup("s1", "k1", base) is None, "the oldest entry was evicted past the capacity"
        short = SemanticCache(dimension=384, threshold=0.9, ttl_s=0.05, capacity=10)
        await short.remember("s", "k", base, b"y", {})
        await asyncio.sleep(0.1)
        assert await short.lookup("s", "k", base) is None, "expired"

    asyncio.run(scenario())


def test_guard_pins_numbers_and_polarity_into_the_scope() -> None:
    def scope_for(text: str) -> str:
        return scope_of({"messages": [{"role": "user", "content": text}]})

    assert scope_for("What is 17 plus 25?") != scope_for("What is 17 plus 26?")
    assert scope_for("Which foods contain gluten?") != scope_for("Which foods do not contain gluten?")
    assert scope_for("How do I enable 2FA?") != scope_for("How do I disable 2FA?")
    assert scope_for("How do I reverse a list in Python?") == scope_for("How can I reverse a list in Python?")


def test_embedded_cache_survives_a_restart(tmp_path: Any) -> None:
    async def scenario() -> None:
        first = SemanticCache(dimension=384, threshold=0.9, ttl_s=60, capacity=10, directory=tmp_path)
        await first.start()
        await first.remember("s", "k", unit(5), b"kept", {"model": "m"})
        await first.remember("s", "gone", unit(6), b"expired", {})
        await first.stop()
        restarted = SemanticCache(dimension=384, threshold=0.9, ttl_s=60, capacity=10, directory=tmp_path)
        await restarted.start()
        hit = await restarted.lookup("s", "other-key", unit(5))
        assert hit is not None and hit.entry.payload == b"kept" and hit.entry.meta == {"model": "m"}
        assert restarted.status()["entries"] == 2
        empty = SemanticCache(dimension=384, threshold=0.9, ttl_s=60, capacity=10, directory=tmp_path / "none")
        await empty.start()
        assert empty.status()["entries"] == 0

    asyncio.run(scenario())


def test_index_switches_to_hnsw_and_keeps_finding_the_nearest() -> None:
    from router.cache.index import VectorIndex

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(384, hnsw_threshold=100)
    index.add_many("s", np.arange(50, dtype=np.int64), vectors[:50])
    assert index.kind("s") == "flat"
    index.add_many("s", np.arange(50, 300, dtype=np.int64), vectors[50:])
    assert index.kind("s") == "hnsw"
    assert index.search("s", vectors[123], 1)[0][0] == 123
    index.remove("s", 123)
    assert all(found != 123 for found, _ in index.search("s", vectors[123], 3)), "tombstoned"
    assert index.search("other", vectors[0], 1) == []
