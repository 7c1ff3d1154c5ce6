"""router.costs: usage dialects, genai-prices lookups (offline), overrides, and cascade accounting."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from genai_prices import data_snapshot

from router.costs import CascadeCost, Cost, ModelPrice, PriceBook, TokenUsage, cascade_cost, configured_prices
from router.model_settings import ModelInfo

M = 1_000_000


@pytest.fixture
def book() -> PriceBook:
    return PriceBook({"llama-3.1-70b-local": ModelPrice(input=0.5, output=1.5, cache_read=0.05)})


# --- usage dialects -------------------------------------------------------------------------------------------


def test_from_anthropic_adds_cache_to_input() -> None:
    usage = {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50,
             "output_tokens": 20}
    assert TokenUsage.from_anthropic(usage) == TokenUsage(1150, 20, 1000, 50)
    assert TokenUsage.from_anthropic(usage).uncached_input_tokens == 100


def test_from_openai_chat_cached_is_part_of_prompt() -> None:
    usage = {"prompt_tokens": 1200, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 1024}}
    assert TokenUsage.from_openai_chat(usage) == TokenUsage(1200, 30, 1024, 0)
    no_details = {"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": None}
    assert TokenUsage.from_openai_chat(no_details) == TokenUsage(7, 3)


def test_from_openai_responses_cached_is_part_of_input() -> None:
    usage = {"input_tokens": 2048, "output_tokens": 64, "input_tokens_details": {"cached_tokens": 1536},
             "output_tokens_details": {"reasoning_tokens": 10}, "total_tokens": 2112}
    assert TokenUsage.from_openai_responses(usage) == TokenUsage(2048, 64, 1536, 0)


def test_missing_or_junk_counts_are_zero() -> None:
    assert TokenUsage.from_anthropic({}) == TokenUsage()
    assert TokenUsage.from_openai_chat({"prompt_tokens": None, "completion_tokens": "x"}) == TokenUsage()
    assert TokenUsage.from_openai_responses({"input_tokens": True, "output_tokens": -5}) == TokenUsage()


def test_token_usage_rejects_inconsistent_counts() -> None:
    with pytest.raises(ValueError):
        TokenUsage(input_tokens=10, cache_read_tokens=11)
    with pytest.raises(ValueError):
        TokenUsage(input_tokens=-1)
    assert TokenUsage(10, 2, 3, 1) + TokenUsage(5, 1, 0, 2) == TokenUsage(15, 3, 3, 3)


# --- PriceBook ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5", "claude-haiku-4-5-20251001", "gpt-4o-mini",
     "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-instruct",
     "groq/mixtral-8x7b-32768"],
)
def test_product_models_are_known(book: PriceBook, model: str) -> None:
    cost = book.cost(model, TokenUsage(1000, 1000))
    assert cost.known and cost.source == "genai-prices" and cost.usd > 0


def test_input_and_output_priced_differently(book: PriceBook) -> None:
    for model in ("claude-sonnet-5", "gpt-4-1106-preview"):
        inp = book.cost(model, TokenUsage(input_tokens=M)).usd
        out = book.cost(model, TokenUsage(output_tokens=M)).usd
        assert 0 < inp < out
    assert book.cost("gpt-4-1106-preview", TokenUsage(M, M)).usd == pytest.approx(10 + 30)


def test_cache_read_cheaper_than_input_for_claude(book: PriceBook) -> None:
    fresh = book.cost("claude-haiku-4-5", TokenUsage(input_tokens=M)).usd
    cached = book.cost("claude-haiku-4-5", TokenUsage(input_tokens=M, cache_read_tokens=M)).usd
    written = book.cost("claude-haiku-4-5", TokenUsage(input_tokens=M, cache_write_tokens=M)).usd
    assert 0 < cached < fresh < written


def test_name_variants_resolve_to_the_same_price(book: PriceBook) -> None:
    usage = TokenUsage(5000, 700, 4000, 0)
    base = book.cost("claude-haiku-4-5", usage)
    for name in ("claude-haiku-4-5-20251001", "anthropic/claude-haiku-4-5", "Claude-Haiku-4-5-latest"):
        assert book.cost(name, usage) == base
    assert book.describe("groq/mixtral-8x7b-32768") == "groq/mixtral-8x7b-32768"
    together = book.cost("mistralai/Mixtral-8x7B-Instruct-v0.1", TokenUsage(M, 0), provider_hint="together")
    assert together.usd == pytest.approx(0.9)


def test_override_price_is_used(book: PriceBook) -> None:
    cost = book.cost("llama-3.1-70b-local", TokenUsage(2 * M, M, cache_read_tokens=M))
    assert cost.usd == pytest.approx(0.5 + 0.05 + 1.5) and cost.known and cost.source == "override"
    assert book.cost("vllm/Llama-3.1-70B-Local", TokenUsage(M)).source == "override"  # normalised name
    # an override also beats genai-prices for a model it knows
    custom = PriceBook({"gpt-4o-mini": ModelPrice(input=1.0, output=2.0)})
    assert custom.cost("gpt-4o-mini", TokenUsage(M, M)) == Cost(3.0, True, "override")


def test_configured_model_info_prices_win_by_name_then_glob() -> None:
    model_info = {
        "qwen2.5-coder-0.5b": ModelInfo.model_validate({"prices": {"input": 0.02, "output": 0.06}}),
        "qwen2.5-*": ModelInfo.model_validate({"prices": {"input": 0.1, "output": 0.3, "cache_read": 0.01}}),
        "gpt-4o-mini": ModelInfo.model_validate({"prices": {"input": 1, "output": 2}}),
        "claude-*": ModelInfo.model_validate({"context_window": 200_000}),  # no prices: genai-prices' own
    }
    configured = PriceBook(model_info=model_info)
    assert configured.cost("qwen2.5-coder-0.5b", TokenUsage(M, M)) == Cost(pytest.approx(0.08), True, "override")
    assert configured.cost("qwen2.5-7b", TokenUsage(2 * M, M, cache_read_tokens=M)).usd == pytest.approx(
        0.1 + 0.01 + 0.3), "the first glob that matches"
    assert configured.describe("Qwen2.5-7B") is None, "globs are case-sensitive"
    assert configured.cost("gpt-4o-mini", TokenUsage(M, M)) == Cost(3.0, True, "override"), "beats genai-prices"
    assert configured.cost("claude-haiku-4-5", TokenUsage(M)) == PriceBook().cost("claude-haiku-4-5", TokenUsage(M))
    assert configured.cost("my-private-model-7b", TokenUsage(1000, 1000)) == Cost(0.0, False, "unknown")
    assert set(configured_prices(model_info)) == {"qwen2.5-coder-0.5b", "qwen2.5-*", "gpt-4o-mini"}
    assert configured_prices(None) == {}


def test_explicit_overrides_beat_the_configured_model_info() -> None:
    model_info = {"local-*": ModelInfo.model_validate({"prices": {"input": 1, "output": 1}})}
    book = PriceBook({"local-*": ModelPrice(input=5, output=5), "local-a": ModelPrice(input=2, output=2)},
                     model_info=model_info)
    assert book.cost("local-b", TokenUsage(M)).usd == pytest.approx(5.0)
    assert book.cost("local-a", TokenUsage(M)).usd == pytest.approx(2.0), "an exact name before any glob"


def test_unknown_model(book: PriceBook) -> None:
    assert book.cost("my-private-model-7b", TokenUsage(1000, 1000)) == Cost(0.0, False, "unknown")
    assert book.describe("my-private-model-7b") is None


def test_override_rejects_bad_prices() -> None:
    with pytest.raises(ValueError):
        ModelPrice(input=-1.0, output=1.0)


def test_lookup_cache_is_bounded() -> None:
    small = PriceBook(cache_size=2)
    for name in ("gpt-4o-mini", "claude-sonnet-5", "unknown-a", "unknown-b"):
        small.cost(name, TokenUsage(1, 1))
    assert len(small._cache) == 2


def test_offline_and_independent_of_global_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket is opened, no updater thread starts, and a replaced process-wide snapshot is ignored."""

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    empty = data_snapshot.DataSnapshot(providers=[], from_auto_update=True)
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", empty)
    threads = {t.name for t in threading.enumerate()}
    cost = PriceBook().cost("claude-sonnet-5", TokenUsage(M, 0))
    assert cost.usd == pytest.approx(2.0) and cost.known and cost.source == "genai-prices"
    assert {t.name for t in threading.enumerate()} <= threads


# --- cascade accounting ---------------------------------------------------------------------------------------

DRAFT, STRONG = "claude-haiku-4-5", "claude-opus-4-8"


def test_cascade_accepted(book: PriceBook) -> None:
    draft = TokenUsage(1000, 500)
    result = cascade_cost(book, draft_model=DRAFT, strong_model=STRONG, draft_usage=draft, strong_usage=None,
                          accepted=True)
    assert result.actual_usd == pytest.approx(book.cost(DRAFT, draft).usd)
    assert result.strong_only_usd == pytest.approx(book.cost(STRONG, draft).usd)  # draft tokens at strong prices
    assert result.wasted_draft_usd == 0.0
    assert result.saved_usd > 0 and result.known
    explicit = TokenUsage(1000, 900)
    with_estimate = cascade_cost(book, draft_model=DRAFT, strong_model=STRONG, draft_usage=draft,
                                 strong_usage=None, accepted=True, strong_only_usage=explicit)
    assert with_estimate.strong_only_usd == pytest.approx(book.cost(STRONG, explicit).usd)


def test_cascade_escalated_counts_wasted_draft(book: PriceBook) -> None:
    draft, strong = TokenUsage(1000, 500), TokenUsage(1000, 400)
    result = cascade_cost(book, draft_model=DRAFT, strong_model=STRONG, draft_usage=draft, strong_usage=strong,
                          accepted=False)
    draft_usd, strong_usd = book.cost(DRAFT, draft).usd, book.cost(STRONG, strong).usd
    assert result.wasted_draft_usd == pytest.approx(draft_usd) and draft_usd > 0
    assert result.actual_usd == pytest.approx(draft_usd + strong_usd)
    assert result.strong_only_usd == pytest.approx(strong_usd)
    assert result.saved_usd == pytest.approx(-draft_usd) and result.saved_usd < 0


def test_cascade_with_unknown_model_is_flagged(book: PriceBook) -> None:
    result = cascade_cost(book, draft_model="my-private-model-7b", strong_model=STRONG,
                          draft_usage=TokenUsage(10, 10), strong_usage=None, accepted=True)
    assert not result.known and result.actual_usd == 0.0
    assert CascadeCost(1.0, 3.0, 0.5).saved_usd == 2.0


def test_flat_prices_take_the_fast_path_with_the_same_result() -> None:
    from router.costs import _Found, _to_genai_usage

    book = PriceBook()
    usages = [TokenUsage(input_tokens=1234, output_tokens=567),
              TokenUsage(input_tokens=300_000, output_tokens=10, cache_read_tokens=200_000, cache_write_tokens=50_000)]
    fast_models = 0
    for model in ("gpt-4o", "claude-opus-4-8", "claude-haiku-4-5", "claude-sonnet-4-5", "deepseek-chat",
                  "gemini-2.5-pro", "mixtral-8x7b-instruct"):
        match = book._resolve(model, None)
        assert isinstance(match, _Found)
        fast_models += book._linear_rates(match, None) is not None
        for usage in usages:
            assert book.cost(model, usage).usd == pytest.approx(book._genai_usd(match, _to_genai_usage(usage), None),
                                                                rel=1e-12)
    assert 0 < fast_models < 7  # tiered models (long-context prices) keep the exact slow path
