"""The `model` label of the metrics: a configured name, or a name one of the configuration's glob patterns matches
(so a glob-only routing table still shows real models), at most MAX_MATCHED_MODELS of those per process; any
other name is `other`."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from router.costs import PriceBook, TokenUsage
from router.ledger import MAX_MATCHED_MODELS, OTHER_MODEL, Ledger, LedgerEntry, metric_models
from router.metrics import Metrics
from router.replay.runner import BackgroundServer
from router.settings import Settings
from tests.support import marker

GLOB_ONLY = Settings(providers={"anthropic": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}},
                     models=[{"match": "claude-*", "provider": "anthropic"},
                             {"match": "local-[ab]", "provider": "anthropic", "upstream_model": "qwen2.5-0.5b"}],
                     embedding={"enabled": False}, outcome_log={"enabled": False})


def ledger(settings: Settings = GLOB_ONLY) -> tuple[Ledger, Metrics]:
    metrics = Metrics()
    return Ledger(PriceBook(), metrics, metric_models(settings)), metrics


def test_names_a_pattern_matches_are_labels_and_others_are_other() -> None:
    book, _ = ledger()
    assert metric_models(GLOB_ONLY).patterns == ("claude-*", "local-[ab]")
    assert book.model_label("claude-haiku-4-5") == "claude-haiku-4-5"
    assert book.model_label("anthropic/claude-opus-4-8") == "anthropic/claude-opus-4-8", "a provider prefix"
    assert book.model_label("qwen2.5-0.5b") == "qwen2.5-0.5b", "an upstream name the config spells out"
    assert book.model_label("local-a") == "local-a" and book.model_label("local-c") == OTHER_MODEL
    for unmatched in ("gpt-4o", "Claude-haiku", "", None):
        assert book.model_label(unmatched) == OTHER_MODEL, unmatched
    assert book.model_label("claude-" + "x" * 200) == OTHER_MODEL, "a name too long for a label"


def test_matched_names_are_capped_per_process_and_follow_a_reload() -> None:
    book, _ = ledger()
    names = [f"claude-{index}" for index in range(MAX_MATCHED_MODELS + 10)]
    labels = [book.model_label(name) for name in names]
    assert labels == names[:MAX_MATCHED_MODELS] + [OTHER_MODEL] * 10
    assert book.model_label(names[0]) == names[0], "a name labelled before keeps its label"
    assert book.model_label("qwen2.5-0.5b") == "qwen2.5-0.5b", "configured names are never capped"
    book.reconfigure(metric_models(GLOB_ONLY.model_copy(update={"models": []})))
    assert book.model_label(names[0]) == OTHER_MODEL, "no pattern matches it any more"
    book.reconfigure({"claude-0"})
    assert book.model_label("claude-0") == "claude-0" and book.model_label("claude-1") == OTHER_MODEL


def test_the_metrics_carry_the_matched_name() -> None:
    book, metrics = ledger()
    usage = TokenUsage(input_tokens=30, output_tokens=8)
    for model in ("claude-haiku-4-5", "gpt-4o"):
        charge = book.charge(model, usage)
        book.post(LedgerEntry(served=charge, strong_only_usd=0.01, strong_only_model="claude-opus-4-8"))
    tokens = "cascadeflow_model_tokens_total"
    assert metrics.value(tokens, kind="input", model="claude-haiku-4-5") == 30
    assert metrics.value(tokens, kind="input", model=OTHER_MODEL) == 30, "gpt-4o matches nothing"
    original = metrics.value("cascadeflow_model_cost_usd_total", kind="original", model="claude-opus-4-8")
    assert original == 0.02


def test_a_glob_routed_request_is_labelled_by_its_model(proxy: BackgroundServer) -> None:
    model = f"claude-{marker()}"  # only `claude-*` routes it
    response = httpx.post(proxy.url + "/v1/messages", timeout=30,
                          headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                          json={"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    scraped = httpx.get(proxy.url + "/metrics", timeout=30).text
    models = {sample.labels["model"] for family in text_string_to_metric_families(scraped)
              for sample in family.samples if family.name == "cascadeflow_model_tokens"}
    assert model in models, sorted(models)
