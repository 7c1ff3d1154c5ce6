"""The encoder: normalised vectors, meaningful similarity, micro-batching off the event loop."""

from __future__ import annotations

import asyncio

import numpy as np

from router.embedding.encoder import RUN_TOKENS, Encoder, _runs
from router.embedding.text import embedding_text


def test_vectors_are_normalised_and_meaningful(encoder: Encoder) -> None:
    vectors = encoder.encode_batch(["How do I reverse a list in Python?", "Reverse a Python list: how?",
                                    "What is the capital of Australia?"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > 0.8 > vectors[0] @ vectors[2]


def test_concurrent_calls_are_batched_and_the_loop_stays_responsive(encoder: Encoder) -> None:
    topics = ["databases", "sourdough bread", "the Roman empire", "tax law", "jazz piano", "volcanoes",
              "chess openings", "Rust lifetimes", "marathon training", "orbital mechanics"]
    forms = ["Explain {} to a beginner.", "What are common mistakes with {}?", "Write a short poem about {}.",
             "Give me a reading list on {}.", "Why do people argue about {}?"]
    texts = [form.format(topic) for topic in topics for form in forms]

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
    alone = np.stack([encoder.encode_batch([text])[0] for text in texts])
    similarity = np.stack(vectors) @ alone.T
    assert (similarity.argmax(axis=1) == np.arange(len(texts))).all(), "each caller gets its own row"
    # int8 activations are quantized per call (one scale per batch), so a batch moves a row by a little
    assert similarity.diagonal().min() > 0.98


def test_long_texts_and_mixed_lengths_in_one_batch(encoder: Encoder) -> None:
    short, long = "What is the capital of Australia?", "Summarise the history of the printing press. " * 120
    together = encoder.encode_batch([long, short, "", long[:300]])
    assert together.shape == (4, 384)
    assert float(together[1] @ encoder.encode_batch([short])[0]) > 0.98
    assert float(together[0] @ encoder.encode_batch([long])[0]) > 0.98
    assert encoder.encode_batch([]).shape == (0, 384)


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


def test_a_model_run_takes_at_most_its_token_budget() -> None:
    lengths = [256, 256, 120, 120, 120, 120, 120, 9, 9, 9]
    runs = _runs(sorted(range(len(lengths)), key=lambda row: lengths[row]), lengths)
    assert runs == [[7, 8, 9], [2, 3, 4, 5], [6], [0], [1]]
    assert all(len(run) * max(lengths[row] for row in run) < RUN_TOKENS or len(run) == 1 for run in runs)
    assert _runs([0], [4000]) == [[0]], "a row longer than the budget runs alone"
