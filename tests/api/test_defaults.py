"""Defaults and orderings of the rebuilt request path: the cache is opt-in and serves only deterministic answers,
control headers and exact matches come before any embedding, failed drafts and failed requests say so, token
counts go to the strong model, and background exploration never spends a client's own key."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.embedding.encoder import Encoder, Vector
from router.replay.runner import BackgroundServer
from tests.learned.support import wait_for
from tests.support import ProxyFactory, item_body, marker, proxy_settings, received_with

RULE = {"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
        "quality_threshold": 0.6}
CLIENT_KEY = "sk-client-own-key"


def ask(proxy: BackgroundServer, content: str, *, model: str = "claude-sonnet-5", temperature: float | None = 0.0,
        headers: dict[str, str] | None = None, stream: bool = False) -> httpx.Response:
    """One Anthropic Messages request (temperature 0 unless told), with the client's own key."""
    body: dict[str, Any] = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": content}]}
    if temperature is not None:
        body["temperature"] = temperature
    if stream:
        body["stream"] = True
    sent = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", **(headers or {})}
    return httpx.post(proxy.url + "/v1/messages", json=body, headers=sent, timeout=30)


def models_called(upstream: BackgroundServer, tag: str) -> list[str]:
    return [item_body(item)["model"] for item in received_with(upstream, tag)]


def metric(proxy: BackgroundServer, pattern: str) -> float:
    """The sum of the /metrics samples whose name and labels match the regular expression (0 when none)."""
    total = 0.0
    for line in httpx.get(proxy.url + "/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if not line.startswith("#") and re.fullmatch(pattern, name):
            total += float(value)
    return total


def poll(check: Any, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def cache_proxy(factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder, tmp_path: Path,
                cache: dict[str, Any], rules: list[dict[str, Any]] | None = None,
                shared: Encoder | None = None) -> BackgroundServer:
    settings = proxy_settings(upstream.url, embedding={"enabled": True},
                              cache={"directory": str(tmp_path / "semantic"), **cache}, cascade_rules=rules or [])
    return factory(settings, shared or encoder)


def outcome_log(tmp_path: Path) -> dict[str, Any]:
    return {"enabled": True, "url": f"sqlite:///{tmp_path}/o.sqlite", "spool_path": None, "flush_interval_ms": 20}


# 1. the semantic cache is opt-in

def test_cache_is_off_by_default(proxy_factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder,
                                 tmp_path: Path) -> None:
    proxy = cache_proxy(proxy_factory, upstream, encoder, tmp_path, cache={})
    tag = marker()
    for _ in range(2):
        response = ask(proxy, f"What is the capital of France? {tag}")
        assert response.status_code == 200 and "x-cascadeflow-cache" not in response.headers
    assert len(received_with(upstream, tag)) == 2, "with default settings nothing is served from a cache"


def test_a_rule_opts_in_to_the_cache(proxy_factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder,
                                     tmp_path: Path) -> None:
    proxy = cache_proxy(proxy_factory, upstream, encoder, tmp_path, cache={},
                        rules=[{**RULE, "semantic_cache": True}])
    cached, plain = marker(), marker()
    seen = [ask(proxy, f"What is 2+2? {cached}", model="claude-opus-4-8").headers.get("x-cascadeflow-cache")
            for _ in range(2)]
    assert seen[0] != "hit" and seen[1] == "hit"
    assert models_called(upstream, cached) == ["claude-haiku-4-5"]
    for _ in range(2):
        assert "x-cascadeflow-cache" not in ask(proxy, f"What is 2+2? {plain}").headers
    assert models_called(upstream, plain) == ["claude-sonnet-5", "claude-sonnet-5"], "other models stay uncached"


# 2. only requests whose sampling makes one answer acceptable are served from the cache

def test_cache_serves_only_deterministic_requests_unless_a_rule_allows_sampling(
        proxy_factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder, tmp_path: Path) -> None:
    proxy = cache_proxy(proxy_factory, upstream, encoder, tmp_path, cache={"enabled": True},
                        rules=[{**RULE, "cache_sampled": True}])
    unset, greedy, sampled = marker(), marker(), marker()
    for _ in range(2):
        response = ask(proxy, f"Say hello. {unset}", temperature=None)
        assert response.headers.get("x-cascadeflow-cache") != "hit"
    assert len(received_with(upstream, unset)) == 2, "no temperature: the provider samples at 1, never cached"
    seen = [ask(proxy, f"Say hello. {greedy}").headers.get("x-cascadeflow-cache") for _ in range(2)]
    assert seen == ["miss", "hit"] and len(received_with(upstream, greedy)) == 1
    seen = [ask(proxy, f"What is 2+2? {sampled}", model="claude-opus-4-8", temperature=None)
            .headers.get("x-cascadeflow-cache") for _ in range(2)]
    assert seen[0] != "hit" and seen[1] == "hit", "cache_sampled: true lets the rule's cache serve sampled requests"
    assert len(received_with(upstream, sampled)) == 1


# 3. control headers are read before the cache

def test_force_header_bypasses_a_cached_answer(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                               encoder: Encoder, tmp_path: Path) -> None:
    proxy = cache_proxy(proxy_factory, upstream, encoder, tmp_path, cache={"enabled": True}, rules=[RULE])
    tag = marker()
    ask(proxy, f"What is 2+2? {tag}", model="claude-opus-4-8")
    assert ask(proxy, f"What is 2+2? {tag}", model="claude-opus-4-8").headers["x-cascadeflow-cache"] == "hit"
    forced = ask(proxy, f"What is 2+2? {tag}", model="claude-opus-4-8", headers={"x-cascadeflow-force": "strong"})
    assert forced.status_code == 200 and forced.headers.get("x-cascadeflow-cache") != "hit"
    assert forced.json()["content"][0]["text"] == "Hello from claude-opus-4-8."
    assert models_called(upstream, tag) == ["claude-haiku-4-5", "claude-opus-4-8"]


def test_an_accepted_draft_reports_the_cache_miss(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                  encoder: Encoder, tmp_path: Path) -> None:
    proxy = cache_proxy(proxy_factory, upstream, encoder, tmp_path, cache={"enabled": True}, rules=[RULE])
    for content in (f"What is 2+2? {marker()}", f"{marker()} [[weak:claude-haiku-4-5]]"):  # served draft, escalated
        response = ask(proxy, content, model="claude-opus-4-8")
        assert response.headers.get("x-cascadeflow-cache") == "miss", response.headers.get("x-cascadeflow-route")


# 4. exact matches are tried before any embedding

class CountingEncoder(Encoder):
    """The session's model, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.embeds = 0

    async def embed(self, text: str) -> Vector:
        self.embeds += 1
        return await super().embed(text)


def test_exact_hit_needs_no_embedding(proxy_factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder,
                                      tmp_path: Path) -> None:
    counting = CountingEncoder()
    counting._session, counting._tokenizer = encoder._session, encoder._tokenizer  # loaded: not loaded again
    proxy = cache_proxy(proxy_factory, upstream, encoder, tmp_path, cache={"enabled": True}, shared=counting)
    tag = marker()
    assert ask(proxy, f"Name a prime number. {tag}").headers["x-cascadeflow-cache"] == "miss"
    assert counting.embeds == 1, "a miss embeds the request once"
    again = ask(proxy, f"Name a prime number. {tag}")
    assert again.headers["x-cascadeflow-cache"] == "hit"
    assert again.headers["x-cascadeflow-cache-match"] == "exact"
    assert counting.embeds == 1, "an exact hit is found without embedding the request"
    assert len(received_with(upstream, tag)) == 1


# 5. a draft that errors is reported as failed, a skipped one as skipped

def test_failed_draft_is_reported_as_failed(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    proxy = proxy_factory(proxy_settings(upstream.url, cascade_rules=[RULE]))
    failing, forced = marker(), marker()
    response = ask(proxy, f"{failing} [[fail:claude-haiku-4-5]]", model="claude-opus-4-8")
    assert response.status_code == 200
    assert response.headers["x-cascadeflow-draft-accepted"] == "failed"
    assert response.headers["x-cascadeflow-route"] == "escalated"
    assert models_called(upstream, failing) == ["claude-haiku-4-5", "claude-opus-4-8"]
    skipped = ask(proxy, forced, model="claude-opus-4-8", headers={"x-cascadeflow-force": "strong"})
    assert skipped.headers["x-cascadeflow-draft-accepted"] == "skipped"
    assert models_called(upstream, forced) == ["claude-opus-4-8"]


# 6. failed requests leave a trace in the metrics and the outcome log

def test_failed_requests_are_counted_and_recorded(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                  tmp_path: Path) -> None:
    log = outcome_log(tmp_path)
    proxy = proxy_factory(proxy_settings(upstream.url, outcome_log=log))
    failed = r'cascadeflow_requests_total\{dialect="anthropic",endpoint="messages",route="failed",status="\d+"\}'
    assert ask(proxy, f"{marker()} [[status:529]]").status_code == 529
    assert ask(proxy, f"{marker()} [[fail:claude-sonnet-5]]", stream=True).status_code == 500
    refused = httpx.post(proxy.url + "/v1/messages", json={"model": "claude-sonnet-5", "max_tokens": 16},
                         headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
    assert refused.status_code == 400
    assert metric(proxy, failed) == 3
    found = wait_for(log["url"], lambda records: len(records) >= 3, timeout_s=15)
    assert [r.route for r in found] == ["failed"] * 3
    assert all(r.requested_model == "claude-sonnet-5" and r.endpoint == "messages" for r in found)


# 7. count_tokens for cascade/<name> asks the rule's strong model

def test_count_tokens_of_a_named_rule_uses_its_strong_model(proxy_factory: ProxyFactory,
                                                           upstream: BackgroundServer) -> None:
    rule = {"name": "cheap", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8"}
    proxy = proxy_factory(proxy_settings(upstream.url, cascade_rules=[rule]))
    tag = marker()
    response = httpx.post(proxy.url + "/v1/messages/count_tokens",
                          json={"model": "cascade/cheap", "messages": [{"role": "user", "content": tag}]},
                          headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
    assert response.status_code == 200 and response.json()["input_tokens"] > 0
    sent = received_with(upstream, tag)
    assert [(item["path"], item_body(item)["model"]) for item in sent] == [
        ("/v1/messages/count_tokens", "claude-opus-4-8")]


# 8. background exploration never spends the client's own key

@pytest.mark.parametrize(("spend", "provider_key", "result", "strong_key"), [
    (False, None, "no_key", None),
    (True, None, "ok", CLIENT_KEY),
    (False, "sk-proxy-anthropic", "ok", "sk-proxy-anthropic"),
], ids=["no-key", "spend-client-keys", "provider-key"])
def test_exploration_pays_with_the_provider_key_only(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                     tmp_path: Path, spend: bool, provider_key: str | None,
                                                     result: str, strong_key: str | None) -> None:
    anthropic: dict[str, Any] = {"kind": "anthropic", "base_url": upstream.url}
    if provider_key is not None:
        anthropic["api_key"] = provider_key
    settings = proxy_settings(upstream.url, providers={"anthropic": anthropic},
                              models=[{"match": "claude-*", "provider": "anthropic"}], cascade_rules=[RULE],
                              outcome_log=outcome_log(tmp_path),
                              labels={"exploration_rate": 1.0, "spend_client_keys": spend})
    proxy = proxy_factory(settings)
    tag = marker()
    response = ask(proxy, f"What is 2+2? {tag}", model="claude-opus-4-8")
    assert response.headers["x-cascadeflow-draft-accepted"] == "true"
    explored = rf'cascadeflow_explorations_total\{{[^}}]*result="{result}"[^}}]*\}}'
    poll(lambda: metric(proxy, explored) > 0, f"an exploration with result {result}")
    if strong_key is None:
        time.sleep(0.1)  # an exploration sent anyway would have reached the upstream by now
    calls = [(item_body(item)["model"], item["headers"].get("x-api-key")) for item in received_with(upstream, tag)]
    assert calls[0] == ("claude-haiku-4-5", CLIENT_KEY), "the client's own request is paid with its own key"
    expected = [] if strong_key is None else [("claude-opus-4-8", strong_key)]
    assert calls[1:] == expected
    if strong_key is None:
        assert metric(proxy, r'cascadeflow_explorations_total\{[^}]*result="ok"[^}]*\}') == 0


def test_ready_shows_no_provider_urls_or_error_text(proxy: BackgroundServer, upstream: BackgroundServer) -> None:
    text = httpx.get(proxy.url + "/ready").text
    assert "provider:anthropic" in text and upstream.url not in text and "base_url" not in text
