"""SmolLM2-135M served for real by llama.cpp (xllamacpp): a short answer with log-probs through the OpenAI API.

Needs `cascadeflow local-models install --models smollm2-135m`; skipped otherwise, unless
CASCADEFLOW_REQUIRE_LOCAL_MODELS=1 makes a missing model a failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from router.local.serve import RunningServer, serve_models
from tests.local.support import installed_models_dir

MODEL = "smollm2-135m"
pytestmark = [pytest.mark.slow, pytest.mark.local_models]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    models_dir = installed_models_dir([MODEL])
    with serve_models([MODEL], models_dir=models_dir, port_base=0, ctx_size=8192,
                      log_dir=tmp_path_factory.mktemp("local-model-logs")) as servers:
        server = servers[MODEL]
        print(f"\n{MODEL} ready in {server.startup_s:.2f} s at {server.base_url}")
        yield server


def test_a_short_completion_with_log_probs(smollm2: RunningServer) -> None:
    import openai

    client = openai.OpenAI(base_url=smollm2.base_url, api_key="local", timeout=120)
    started = time.perf_counter()
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the capital of France? One word."}],
        max_tokens=16, temperature=0, logprobs=True, top_logprobs=2)
    elapsed = time.perf_counter() - started
    choice = answer.choices[0]
    assert answer.model == MODEL and choice.message.content
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert choice.logprobs is not None and choice.logprobs.content is not None
    tokens = choice.logprobs.content
    assert len(tokens) == answer.usage.completion_tokens
    assert all(token.logprob <= 0.0 and len(token.top_logprobs) == 2 for token in tokens)
    assert "".join(token.token for token in tokens) == choice.message.content
    timings = (answer.model_extra or {}).get("timings", {})
    print(f"{answer.usage.completion_tokens} tokens in {elapsed:.2f} s "
          f"({timings.get('predicted_per_second', 0):.0f} tokens/s generated): {choice.message.content!r}")


def test_streaming_carries_log_probs_too(smollm2: RunningServer) -> None:
    import openai

    client = openai.OpenAI(base_url=smollm2.base_url, api_key="local", timeout=120)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0,
        logprobs=True, top_logprobs=1, stream=True)
    text, logprobs = "", []
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.logprobs is not None and choice.logprobs.content:
                logprobs += [token.logprob for token in choice.logprobs.content]
    assert text and logprobs and all(value <= 0.0 for value in logprobs)


def test_the_anthropic_messages_endpoint_answers(smollm2: RunningServer) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=smollm2.root_url, api_key="local", timeout=120)
    message = client.messages.create(model=MODEL, max_tokens=8,
                                     messages=[{"role": "user", "content": "Say hello."}])
    assert message.type == "message" and message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
