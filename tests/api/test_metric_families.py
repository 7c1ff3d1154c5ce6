"""Every metric family of METRICS, scraped from a running proxy and parsed by prometheus-client.

One proxy (proxy keys, a cascade rule with the learned router and the trained verifier, the semantic cache, the
outcome log, the spend ledger, exploration labels, retries, a provider with a breaker and a fallback, a rate
limit and a budget, a config file) gets traffic that moves each family: a cache hit, an accepted draft, an
escalation (streamed), a failed draft, a forced strong answer, pass-through in three dialects, a token count, an
upstream 529 retried then relayed, a breaker that opens and a fallback that answers, a 429 of each kind, requests
refused before routing (a body too large among them), an encoder that crashes, a reload, and newer artifacts
that are refused. Then each family must be in the scrape with its declared labels and plausible values, and no
label may carry a key, a user or a prompt: model labels are configured names, names a configured glob
pattern matches, or `other`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest import approx

from router.app import create_app
from router.auth import hash_key
from router.embedding.encoder import Encoder
from router.ledger import MetricModels, metric_models
from router.metrics import METRICS
from router.reload import ConfigSource
from router.replay.runner import BackgroundServer
from router.settings import load_settings
from tests.budgets.helpers import PRICES
from tests.support import marker

ROOT = Path(__file__).resolve().parents[2]
MAIN, LIMITED, THRIFTY = "key-main-" + marker(), "key-limited-" + marker(), "key-thrifty-" + marker()
USERS = ("ops-user", "slow-user", "thrift-user")
CRASH = "[[crash-the-encoder]]"
Sample = tuple[str, dict[str, str], float]


class CrashOnMarker(Encoder):
    """The session's loaded encoder, failing on any text that carries CRASH."""

    def __init__(self, loaded: Encoder) -> None:
        super().__init__()
        self._session, self._tokenizer = loaded._session, loaded._tokenizer

    def encode_batch(self, texts: Sequence[str]) -> Any:
        if any(CRASH in text for text in texts):
            raise RuntimeError("encoder crashed on purpose")
        return super().encode_batch(texts)


def config(upstream_url: str, tmp: Path, models_dir: Path, *, late_route: bool = False) -> dict[str, Any]:
    """The proxy's config file (JSON is YAML); `late_route` adds an exact route for claude-sonnet-5."""
    providers = {
        "anthropic": {"kind": "anthropic", "base_url": upstream_url, "api_key": "sk-proxy-anthropic"},
        "openai": {"kind": "openai", "base_url": upstream_url + "/v1", "api_key": "sk-proxy-openai"},
        "flaky": {"kind": "anthropic", "base_url": upstream_url, "api_key": "sk-proxy-flaky",
                  "retry": {"max_retries": 0}, "breaker": {"failure_threshold": 1, "cooldown_s": 600}},
    }
    # claude-sonnet-5 matches no route (the anthropic provider serves it as its dialect's default): its metrics
    # say `other` until the reload names it; the others are labelled by name through their glob patterns
    models = [{"match": "claude-haiku-*", "provider": "anthropic"}, {"match": "claude-opus-*", "provider": "anthropic"},
              {"match": "gpt-*", "provider": "openai"},
              {"match": "flaky-model", "provider": "flaky", "fallback_models": ["claude-haiku-4-5"]}]
    keys = [{"key_sha256": hash_key(MAIN), "user": USERS[0], "admin": True},
            {"key_sha256": hash_key(LIMITED), "user": USERS[1], "tier": "free"},
            {"key_sha256": hash_key(THRIFTY), "user": USERS[2], "daily_budget_usd": 0.05}]
    artifacts = {"models_dir": str(models_dir), "reload_interval_s": 0.2}
    return {
        "providers": providers,
        "models": models + ([{"match": "claude-sonnet-5", "provider": "anthropic"}] if late_route else []),
        "cascade_rules": [{"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5",
                           "verifier_model": "claude-opus-4-8"}],
        "auth": {"keys": keys, "tiers": {"free": {"rpm": 1}}},
        "model_info": PRICES,
        "embedding": {"enabled": True},
        "cache": {"enabled": True, "directory": None},
        "outcome_log": {"url": f"sqlite:///{tmp}/outcomes.sqlite", "flush_interval_ms": 20, "spool_path": None},
        "spend": {"url": f"sqlite:///{tmp}/spend.sqlite", "flush_interval_ms": 20, "spool_path": None},
        "labels": {"exploration_rate": 1.0},
        "learned_router": {**artifacts, "skip_threshold": 0.0},
        "verifier": {**artifacts, "accept_threshold": 0.0},
        "resilience": {"retry": {"max_retries": 1, "initial_backoff_s": 0.01, "max_backoff_s": 0.02},
                       "breaker": {"enabled": False}},
        "reload": {"watch": False},
        "server": {"max_inflight_body_bytes": 64 * 1024},
    }


def refused_artifact(models_dir: Path, kind: str) -> None:
    """A newer artifact of a kind whose metadata names another feature schema: the watcher must refuse it."""
    real = next(path for path in sorted((ROOT / "models").iterdir()) if path.name.startswith(kind + "-"))
    metadata = json.loads((real / "metadata.json").read_text())
    newer = models_dir / f"{kind}-29991231-000000"
    newer.mkdir()
    metadata.update(version="29991231-000000", created_at="2999-12-31T00:00:00+00:00", features_version="999")
    (newer / "metadata.json").write_text(json.dumps(metadata))
    (newer / "model.joblib").write_bytes(b"not a model")


class Traffic:
    """Requests to the proxy, as each key."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def anthropic(self, content: str, *, model: str = "claude-opus-4-8", key: str = MAIN, stream: bool = False,
                  path: str = "/v1/messages", **extra: Any) -> httpx.Response:
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01", **extra.pop("headers", {})}
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        if path == "/v1/messages":
            body.update(max_tokens=64, stream=stream)
        return self.client.post(path, json=body, headers=headers)

    def openai(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body, headers={"authorization": f"Bearer {MAIN}"})

    def scrape(self) -> list[Sample]:
        response = self.client.get("/metrics", headers={"authorization": f"Bearer {MAIN}"})
        assert response.status_code == 200
        return [(sample.name, sample.labels, sample.value)
                for family in text_string_to_metric_families(response.text) for sample in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of a sample name's values over the samples that carry these labels."""
    return sum(value for sample, have, value in samples if sample == name and labels.items() <= have.items())


def drive(traffic: Traffic, tags: list[str]) -> None:
    """The traffic that moves every family (each request's text carries a tag, to look for in the labels)."""

    def tag() -> str:
        tags.append(marker())
        return tags[-1]

    def route_of(response: httpx.Response) -> str:
        assert response.status_code == 200, response.text
        if response.headers.get("x-cascadeflow-cache") == "hit":
            return "cache"
        return response.headers.get("x-cascadeflow-route", "pass_through")

    assert route_of(traffic.anthropic(f"What is 2+2? {tag()}")) == "draft"  # explored in the background
    assert route_of(traffic.anthropic(f"Explain tides. [[max_tokens]] {tag()}", stream=True)) == "escalated"
    assert route_of(traffic.anthropic(f"Hello [[fail:claude-haiku-4-5]] {tag()}")) == "escalated"
    assert route_of(traffic.anthropic(f"Prove it. {tag()}", headers={"x-cascadeflow-force": "strong"})) == "strong"
    assert route_of(traffic.anthropic(f"Plain {tag()}", model="claude-sonnet-5")) == "pass_through"
    assert traffic.openai("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": [
        {"role": "user", "content": f"Hi {tag()}"}]}).status_code == 200
    assert traffic.openai("/v1/responses", {"model": "gpt-4o-mini", "input": f"Hi {tag()}"}).status_code == 200
    assert traffic.anthropic(f"Count me {tag()}", path="/v1/messages/count_tokens").status_code == 200
    cached, routes = tag(), []
    while "cache" not in routes and len(routes) < 50:  # the first answer is stored off the request path
        routes.append(route_of(traffic.anthropic(f"What is the capital of Peru? {cached}", model="claude-haiku-4-5",
                                                 temperature=0)))
    assert routes[0] == "pass_through" and routes[-1] == "cache"
    assert traffic.anthropic(f"[[status:529]] {tag()}", model="claude-sonnet-5").status_code == 529  # retried once
    fallback = traffic.anthropic(f"[[fail:flaky-model status:529]] {tag()}", model="flaky-model")
    assert fallback.status_code == 200 and fallback.headers["x-cascadeflow-fallback-model"] == "claude-haiku-4-5"
    assert route_of(traffic.anthropic(f"Oops {CRASH} {tag()}", model="claude-sonnet-5", temperature=0)) == (
        "pass_through")
    assert [traffic.anthropic(f"Slow {tag()}", model="claude-haiku-4-5", key=LIMITED).status_code
            for _ in range(2)] == [200, 429]
    spent = [traffic.anthropic(f"Spend {tag()}", model="claude-haiku-4-5", key=THRIFTY).status_code
             for _ in range(6)]
    assert spent[0] == 200 and spent[-1] == 429
    assert traffic.client.post("/v1/messages", content=b"{nope", headers={"x-api-key": MAIN}).status_code == 400
    assert traffic.client.post("/v1/messages", content=b" " * (64 * 1024 + 1),
                               headers={"x-api-key": MAIN}).status_code == 413  # alone over the bodies' cap
    assert traffic.anthropic(f"Who? {tag()}", key="key-nobody").status_code == 401


@pytest.fixture(scope="module")
def scraped(upstream: BackgroundServer, encoder: Encoder,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Sample], list[str], frozenset[str]]]:
    tmp = tmp_path_factory.mktemp("families")
    models_dir = tmp / "models"
    models_dir.mkdir()
    for artifact in (ROOT / "models").iterdir():
        if artifact.is_dir():
            (models_dir / artifact.name).symlink_to(artifact)
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config(upstream.url, tmp, models_dir)))
    proxy = BackgroundServer(create_app(load_settings(path), CrashOnMarker(encoder), config=ConfigSource(str(path))))
    with proxy:
        traffic, tags = Traffic(proxy.url), []
        drive(traffic, tags)
        path.write_text(json.dumps(config(upstream.url, tmp, models_dir, late_route=True)))
        reloaded = traffic.client.post("/admin/config/reload", headers={"authorization": f"Bearer {MAIN}"})
        assert reloaded.status_code == 200 and reloaded.json()["status"] == "applied", reloaded.text
        assert traffic.anthropic(f"Named now {tags[0]}", model="claude-sonnet-5").status_code == 200
        for kind in ("router", "verifier"):
            refused_artifact(models_dir, kind)
        deadline, samples = time.monotonic() + 30, traffic.scrape()
        while not settled(samples) and time.monotonic() < deadline:
            time.sleep(0.1)
            samples = traffic.scrape()
        traffic.client.close()
        yield samples, tags, metric_models(load_settings(path))
    shutil.rmtree(models_dir, ignore_errors=True)


def settled(samples: list[Sample]) -> bool:
    """Whether the work off the request path is done: records written, explorations back, artifacts refused."""
    return (total(samples, "cascadeflow_outcome_log_records_total", result="written")
            >= total(samples, "cascadeflow_outcomes_total", result="queued") > 0
            and total(samples, "cascadeflow_spend_records_total", result="written")
            >= total(samples, "cascadeflow_outcomes_total", result="queued")
            and total(samples, "cascadeflow_explorations_total") >= 1
            and total(samples, "cascadeflow_router_artifact_refusals_total") >= 1
            and total(samples, "cascadeflow_verifier_artifact_refusals_total") >= 1)


ROUTES = ("cache", "pass_through", "draft", "escalated", "strong", "failed")
HAIKU, OPUS = "claude-haiku-4-5", "claude-opus-4-8"
MOVED: dict[str, list[dict[str, str]]] = {
    # label subsets whose sum must be above 0: a counter's `_total`, a gauge, a histogram's `_count`
    "cascadeflow_requests_total": [{"route": route} for route in (*ROUTES, "rejected")] + [
        {"dialect": dialect} for dialect in ("anthropic", "openai_chat", "openai_responses")] + [
        {"endpoint": "count_tokens"}, {"route": "failed", "status": "529"}, {"route": "rejected", "status": "429"},
        {"route": "rejected", "status": "400"}, {"route": "rejected", "status": "401"},
        {"route": "rejected", "status": "413"}],
    "cascadeflow_drafts_total": [{"outcome": outcome} for outcome in ("accepted", "rejected", "failed")],
    "cascadeflow_cache_lookups_total": [{"result": result} for result in ("hit", "miss", "skipped")],
    "cascadeflow_upstream_errors_total": [{"status": "529"}],
    "cascadeflow_upstream_call_errors_total": [{"provider": "anthropic", "reason": "529"},
                                               {"provider": "flaky", "reason": "529"}],
    "cascadeflow_upstream_retries_total": [{"provider": "anthropic", "reason": "529"}],
    "cascadeflow_upstream_circuit_transitions_total": [{"provider": "flaky", "state": "open"}],
    "cascadeflow_fallbacks_total": [{"model": HAIKU}],
    "cascadeflow_config_reloads_total": [{"result": "applied"}],
    "cascadeflow_dependency_errors_total": [{"dependency": "encoder"}],
    "cascadeflow_cost_usd_total": [{"kind": kind} for kind in ("actual", "original", "wasted_draft", "exploration")],
    "cascadeflow_tokens_total": [{"kind": "input", "tier": "served"}, {"kind": "output", "tier": "served"},
                                 {"kind": "input", "tier": "draft_wasted"}],
    "cascadeflow_model_cost_usd_total": [{"kind": "actual", "model": HAIKU}, {"kind": "actual", "model": OPUS},
                                         {"kind": "original", "model": OPUS}],
    "cascadeflow_model_tokens_total": [{"kind": "input", "model": "other"}, {"kind": "output", "model": HAIKU},
                                       {"kind": "input", "model": "claude-sonnet-5"},
                                       {"kind": "input", "model": "gpt-4o-mini"}],
    "cascadeflow_rate_limit_refusals_total": [{"reason": "requests", "tier": "free"}],
    "cascadeflow_budget_refusals_total": [{"period": "daily", "scope": "key", "tier": "none"}],
    "cascadeflow_body_refusals_total": [{"reason": "too_large"}],
    "cascadeflow_spend_records_total": [{"result": "written"}],
    "cascadeflow_router_predictions_total": [{"skip": "false"}],
    "cascadeflow_router_predict_seconds_total": [{}],
    "cascadeflow_verifier_predict_seconds_total": [{}],
    "cascadeflow_router_artifact_loads_total": [{}],
    "cascadeflow_router_artifact_refusals_total": [{}],
    "cascadeflow_verifier_artifact_loads_total": [{}],
    "cascadeflow_verifier_artifact_refusals_total": [{}],
    "cascadeflow_outcomes_total": [{"result": "queued"}],
    "cascadeflow_outcome_log_records_total": [{"result": "written"}],
    "cascadeflow_labels_total": [{}],
    "cascadeflow_explorations_total": [{"result": "ok"}],
    "cascadeflow_cache_entries": [{}],
    "cascadeflow_outcome_log_queue_depth": [],  # sampled at the scrape: present, 0 once the log is written
    "cascadeflow_inflight_body_bytes": [],  # sampled at the scrape: present, 0 with no body held
    "cascadeflow_upstream_circuit_open": [{"provider": "flaky"}],
    "cascadeflow_request_duration_seconds": [{"route": route} for route in ROUTES],
    "cascadeflow_stream_first_byte_seconds": [{"dialect": "anthropic", "route": "escalated"},
                                              {"dialect": "openai_chat", "route": "pass_through"}],
    "cascadeflow_draft_duration_seconds": [{"model": HAIKU, "outcome": outcome}
                                           for outcome in ("accepted", "rejected", "failed")],
    "cascadeflow_strong_duration_seconds": [{"model": OPUS, "route": "escalated"}, {"model": OPUS, "route": "strong"}],
    "cascadeflow_embedding_duration_seconds": [{"step": "cache"}, {"step": "predict"}],
    "cascadeflow_cache_lookup_duration_seconds": [{}],
    "cascadeflow_router_predict_duration_seconds": [{}],
    "cascadeflow_verifier_predict_duration_seconds": [{}],
}
Scraped = tuple[list[Sample], list[str], MetricModels]


def value_sample(name: str) -> str:
    """The sample that carries a family's value: a counter's `_total`, a gauge itself, a histogram's `_count`."""
    return name + "_count" if METRICS[name].kind == "histogram" else name


def of_family(samples: list[Sample], name: str) -> list[Sample]:
    base = name.removesuffix("_total") if METRICS[name].kind == "counter" else name
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum", "_created")}[METRICS[name].kind]
    return [sample for sample in samples if sample[0] in {base + suffix for suffix in suffixes}]


def test_the_table_names_every_family() -> None:
    assert sorted(MOVED) == sorted(METRICS), "each family of METRICS has its expectations here"


@pytest.mark.parametrize("name", sorted(METRICS))
def test_each_family_is_scraped_with_its_labels_and_moved(scraped: Scraped, name: str) -> None:
    samples = of_family(scraped[0], name)
    assert samples, f"{name} is not in the scrape"
    declared = set(METRICS[name].labels)
    for sample, labels, value in samples:
        assert set(labels) - {"le"} == declared, (sample, labels)
        assert value >= 0, (sample, labels, value)
    for labels in MOVED[name]:
        assert total(samples, value_sample(name), **labels) > 0, (name, labels)


def test_histograms_are_consistent_and_count_every_routed_request(scraped: Scraped) -> None:
    samples = scraped[0]
    for name in (name for name, spec in METRICS.items() if spec.kind == "histogram"):
        for sample, labels, count in of_family(samples, name):
            if sample != name + "_count":
                continue
            buckets = sorted((float(have["le"]), value) for bucket, have, value in samples
                             if bucket == name + "_bucket" and {k: v for k, v in have.items() if k != "le"} == labels)
            assert buckets[-1] == (float("inf"), count) and [v for _, v in buckets] == sorted(v for _, v in buckets)
    counted = [(labels, value) for sample, labels, value in samples if sample == "cascadeflow_requests_total"
               and labels["route"] != "rejected" and labels["endpoint"] != "count_tokens"]
    assert counted
    for labels, value in counted:  # every request the pipeline finished is timed once
        assert total(samples, "cascadeflow_request_duration_seconds_count", **labels) == value, labels


def test_spend_by_model_adds_up_to_the_totals(scraped: Scraped) -> None:
    samples = scraped[0]
    for kind in ("actual", "original"):
        assert total(samples, "cascadeflow_model_cost_usd_total", kind=kind) == approx(
            total(samples, "cascadeflow_cost_usd_total", kind=kind), rel=1e-9, abs=1e-12)
    for kind in ("input", "output"):
        assert total(samples, "cascadeflow_model_tokens_total", kind=kind) == total(
            samples, "cascadeflow_tokens_total", kind=kind)
    accepted, drafts = (total(samples, "cascadeflow_drafts_total", outcome="accepted"),
                        total(samples, "cascadeflow_drafts_total"))
    assert 0 < accepted / drafts < 1, "the acceptance rate is a share of the drafts"
    hits = total(samples, "cascadeflow_cache_lookups_total", result="hit")
    assert 0 < hits / (hits + total(samples, "cascadeflow_cache_lookups_total", result="miss")) < 1


def test_no_record_was_lost_on_the_way_to_the_outcome_log_and_the_spend_ledger(scraped: Scraped) -> None:
    samples = scraped[0]
    queued = total(samples, "cascadeflow_outcomes_total", result="queued")
    assert queued == total(samples, "cascadeflow_requests_total") - total(
        samples, "cascadeflow_requests_total", route="rejected") - total(
        samples, "cascadeflow_requests_total", endpoint="count_tokens"), "one record per finished request"
    assert total(samples, "cascadeflow_outcome_log_records_total", result="written") == queued
    assert total(samples, "cascadeflow_spend_records_total", result="written") == queued
    for lost in ("dropped", "spooled", "rejected"):
        assert total(samples, "cascadeflow_outcome_log_records_total", result=lost) == 0
    assert total(samples, "cascadeflow_outcome_log_queue_depth") == 0


def test_no_label_carries_a_key_a_user_or_a_prompt(scraped: Scraped) -> None:
    samples, tags, configured = scraped
    secrets = [MAIN, LIMITED, THRIFTY, *(hash_key(key)[:12] for key in (MAIN, LIMITED, THRIFTY)), *USERS, *tags,
               CRASH, "Peru"]
    values = {value for _, labels, _ in samples for value in labels.values()}
    assert not [value for value in values if any(secret in value for secret in secrets)]
    models = {labels["model"] for _, labels, _ in samples if "model" in labels}
    unnamed = {model for model in models if model not in configured.names and not configured.matches(model)}
    assert models and unnamed <= {"other"}, unnamed
    assert "other" in models and "claude-sonnet-5" in models, "unnamed until the reload named it"
