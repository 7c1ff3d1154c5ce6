"""Precision and recall of cache hits at the default threshold on the hand-written precision set."""

from __future__ import annotations

from typing import Any

import numpy as np

from router.cache.scope import DEFAULT_SIMILARITY_THRESHOLD, cache_scope
from router.embedding.encoder import Encoder
from router.embedding.text import embedding_text
from tests.cache.data.precision_pairs import NEAR_MISSES, PARAPHRASES, SCOPE_VARIANTS


def request(text: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"system": "You are helpful.", "messages": [{"role": "user", "content": text}]}
    return {**base, **changes}


def variant(kind: str, text: str) -> tuple[str, dict[str, Any]]:
    """The same question under another scope: (tenant, request)."""
    if kind == "tenant":
        return "tenant-2", request(text)
    if kind == "system":
        return "tenant-1", request(text, system="You are a pirate. Answer like one.")
    if kind == "history":
        return "tenant-1", request(text, messages=[{"role": "user", "content": "Let's talk about Rust."},
                                                   {"role": "assistant", "content": "Sure."},
                                                   {"role": "user", "content": text}])
    if kind == "tools":
        return "tenant-1", request(text, tools=[{"name": "search", "input_schema": {"type": "object"}}])
    return "tenant-1", request(text, temperature=0.0, top_p=0.1)


def pairs() -> list[tuple[str, tuple[str, dict[str, Any]], tuple[str, dict[str, Any]], bool]]:
    cases = [("paraphrase", ("tenant-1", request(a)), ("tenant-1", request(b)), True) for a, b in PARAPHRASES]
    cases += [(kind, ("tenant-1", request(a)), ("tenant-1", request(b)), False) for kind, a, b in NEAR_MISSES]
    for index, (a, b) in enumerate(PARAPHRASES):
        for offset in (0, 2):
            kind = SCOPE_VARIANTS[(index + offset) % len(SCOPE_VARIANTS)]
            cases.append((f"scope:{kind}", ("tenant-1", request(a)), variant(kind, b), False))
    return cases


def predicted_hits(encoder: Encoder, threshold: float) -> list[tuple[str, bool, bool, float]]:
    cases = pairs()
    texts = [embedding_text(side[1]) for _, left, right, _ in cases for side in (left, right)]
    vectors = encoder.encode_batch(texts)
    results = []
    for index, (kind, (tenant_a, a), (tenant_b, b), should_hit) in enumerate(cases):
        same_scope = (cache_scope(tenant=tenant_a, model="m", request=a)
                      == cache_scope(tenant=tenant_b, model="m", request=b))
        similarity = float(np.dot(vectors[2 * index], vectors[2 * index + 1]))
        results.append((kind, should_hit, same_scope and similarity >= threshold, similarity))
    return results


def test_default_threshold_gives_no_false_hit(encoder: Encoder) -> None:
    results = predicted_hits(encoder, DEFAULT_SIMILARITY_THRESHOLD)
    assert len(results) >= 200
    false_hits = [(kind, round(sim, 3)) for kind, should, hit, sim in results if hit and not should]
    true_hits = sum(1 for _, should, hit, _ in results if hit and should)
    positives = sum(1 for _, should, _, _ in results if should)
    precision = true_hits / max(1, true_hits + len(false_hits))
    recall = true_hits / positives
    print(f"\nprecision set: {len(results)} pairs, threshold {DEFAULT_SIMILARITY_THRESHOLD}: "
          f"precision {precision:.3f}, recall {recall:.3f}, false hits {false_hits}")
    assert false_hits == []
    assert recall >= 0.5
