"""The encoder: normalised vectors, meaningful similarity, micro-batching off the event loop."""

from __future__ import annotations

import asyncio

import numpy as np

from router.embedding.encoder import Encoder
from router.embedding.text import embedding_text


def test_vectors_are_normalised_and_meaningful(encoder: Encoder) -> None:
    vectors = encoder.encode_batch(["How do I reverse a list in Python?", "Reverse a Python list: how?",
                                    "What is the capital of Australia?"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > 0.8 > vectors[0] @ vectors[2]


def test_concurrent_calls_are_batched_and_the_loop_stays_responsive(encoder: Encoder) -> None:
    texts = [f"question number {i} about databases and indexes" for i in range(50)]

    async def scenario() -> tuple[list[np.ndarray], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        before = encoder.batches_run
        vectors = await asyncio.gather(*(encoder.embed(text) for text in texts))
        batches = encoder.batches_run - before
        task.cancel()
        assert ticks > 0, "the event loop kept running while the model worked"
        return list(vectors), batches

    vectors, batches = asyncio.run(scenario())
    assert batches < 10, f"50 concurrent calls took {batches} model calls"
    expected = encoder.encode_batch(texts)
    assert np.allclose(np.stack(vectors), expected, atol=1e-5), "each caller gets its own row"


def test_embedding_text_is_the_last_user_turn_with_context_when_referential() -> None:
    request = {"messages": [
        {"role": "user", "content": "Tell me about Barack Obama."},
        {"role": "assistant", "content": "He was the 44th president."},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>date</system-reminder>"},
                                     {"type": "text", "text": "how old is he?"}]},
        {"role": "system", "content": "skills"}]}
    text = embedding_text(request)
    assert text.endswith("how old is he?") and "44th president" in text and "system-reminder" not in text
    long = {"messages": [{"role": "user", "content": "a" * 5000 + "END"}]}
    assert len(embedding_text(long, max_chars=1000)) <= 1003 and embedding_text(long).endswith("END")
