"""The semantic cache through the proxy: hits in every dialect, scope isolation, what is never cached."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from router.embedding.encoder import Encoder
from router.replay.runner import BackgroundServer
from tests.support import ProxyFactory, marker, proxy_settings, received_with

CASCADE = [{"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5",
            "verifier_model": "claude-opus-4-8", "quality_threshold": 0.6}]


@pytest.fixture(scope="module")
def cached_proxy(proxy_factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder) -> BackgroundServer:
    settings = proxy_settings(upstream.url, embedding={"enabled": True}, cache={"enabled": True, "directory": None},
                              cascade_rules=CASCADE)
    return proxy_factory(settings, encoder)


def claude_client(proxy: BackgroundServer, key: str = "tenant-a") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)


def ask(client: anthropic.Anthropic, content: Any, temperature: float | None = 0.0,
        **extra: Any) -> tuple[str, httpx.Headers]:
    """One question at temperature 0 (the cache serves only answers the client asked to be deterministic)."""
    sampling = {} if temperature is None else {"extra_body": {"temperature": temperature}}
    raw = client.messages.with_raw_response.create(model="claude-sonnet-5", max_tokens=64,
                                                   messages=[{"role": "user", "content": content}],
                                                   **sampling, **extra)
    message = raw.parse()
    return message.content[0].text, raw.headers  # type: ignore[union-attr]


def test_repeat_and_paraphrase_are_served_from_cache(cached_proxy: BackgroundServer,
                                                     upstream: BackgroundServer) -> None:
    tag = marker()
    client = claude_client(cached_proxy)
    first, headers = ask(client, f"How do I reverse a list in Python? {tag}")
    assert headers["x-cascadeflow-cache"] == "miss"
    again, headers = ask(client, f"How do I reverse a list in Python? {tag}")
    assert again == first and headers["x-cascadeflow-cache"] == "hit"
    assert headers["x-cascadeflow-cache-match"] == "exact"
    paraphrase, headers = ask(client, f"How can I reverse a list in Python? {tag}")
    assert paraphrase == first and headers["x-cascadeflow-cache"] == "hit"
    assert float(headers["x-cascadeflow-similarity"]) >= 0.9
    assert len(received_with(upstream, tag)) == 1, "only the first request reached the upstream"


def test_hit_is_replayed_in_each_dialect_and_streamed(cached_proxy: BackgroundServer,
                                                      upstream: BackgroundServer) -> None:
    tag = marker()
    question = f"What is the boiling point of water at sea level? {tag}"
    gpt = openai.OpenAI(base_url=cached_proxy.url + "/v1", api_key="tenant-b", max_retries=0)
    first = gpt.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}],
                                        temperature=0)
    with gpt.chat.completions.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": question}],
                                     stream_options={"include_usage": True}, temperature=0) as stream:
        replayed = stream.get_final_completion()
    assert replayed.choices[0].message.content == first.choices[0].message.content
    assert replayed.model == "gpt-4o-mini"
    assert replayed.usage is not None and replayed.usage.completion_tokens > 0, "usage reports the tokens"
    response = gpt.responses.create(model="gpt-4o-mini", input=f"Name the largest ocean. {tag}", temperature=0)
    with gpt.responses.stream(model="gpt-4o-mini", input=f"Name the largest ocean. {tag}", temperature=0) as stream:
        assert stream.get_final_response().output_text == response.output_text
    assert len(received_with(upstream, tag)) == 2


def test_scope_keeps_tenants_and_conversations_apart(cached_proxy: BackgroundServer,
                                                     upstream: BackgroundServer) -> None:
    tag = marker()
    ask(claude_client(cached_proxy, "tenant-c"), f"How old is he? {tag}")
    _, headers = ask(claude_client(cached_proxy, "tenant-d"), f"How old is he? {tag}")
    assert headers["x-cascadeflow-cache"] == "miss", "another tenant never gets this answer"
    client = claude_client(cached_proxy, "tenant-c")
    for person in ("Barack Obama", "Joe Biden"):
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-5", max_tokens=64, extra_body={"temperature": 0}, messages=[
            {"role": "user", "content": f"Tell me about {person}."},
            {"role": "assistant", "content": "A president."},
            {"role": "user", "content": f"How old is he? {tag}"}])
        assert raw.headers["x-cascadeflow-cache"] == "miss"
    assert len(received_with(upstream, f"How old is he? {tag}")) == 4


def test_never_cached_tools_sampling_and_opt_out(cached_proxy: BackgroundServer, upstream: BackgroundServer) -> None:
    tag = marker()
    client = claude_client(cached_proxy, "tenant-e")
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    for _ in range(2):
        client.messages.create(model="claude-sonnet-5", max_tokens=64, tools=[tool], messages=[
            {"role": "user", "content": f'{tag} weather [[tool:get_weather {{"city": "Rome"}}]]'}])
    sampled = f"Write a haiku. {tag}"
    for _ in range(2):
        _, headers = ask(client, sampled, temperature=1.0)
        assert "x-cascadeflow-cache" not in headers
    unset = f"Say hi. {tag}"  # no temperature: both providers sample at 1, so the answer is not one to repeat
    for _ in range(2):
        _, headers = ask(client, unset, temperature=None)
        assert "x-cascadeflow-cache" not in headers
    opted = f"Opt out question. {tag}"
    ask(client, opted)
    _, headers = ask(client, opted, extra_headers={"x-cascadeflow-cache": "off"})
    assert "x-cascadeflow-cache" not in headers
    assert len(received_with(upstream, tag)) == 8


def test_rejected_draft_is_never_cached(cached_proxy: BackgroundServer, upstream: BackgroundServer) -> None:
    tag = marker()
    client = claude_client(cached_proxy, "tenant-f")
    answers = []
    for _ in range(2):
        raw = client.messages.with_raw_response.create(
            model="claude-opus-4-8", max_tokens=64, extra_body={"temperature": 0},
            messages=[{"role": "user", "content": f"{tag} [[weak:claude-haiku-4-5]]"}])
        answers.append((raw.parse().content[0].text, raw.headers["x-cascadeflow-cache"]))  # type: ignore[union-attr]
    assert answers == [("Hello from claude-opus-4-8.", "miss"), ("Hello from claude-opus-4-8.", "hit")]
    assert [r["body"]["model"] for r in received_with(upstream, tag)] == ["claude-haiku-4-5", "claude-opus-4-8"]
    text = httpx.get(cached_proxy.url + "/metrics").text
    assert 'cascadeflow_cache_lookups_total{result="hit"}' in text
    ready = httpx.get(cached_proxy.url + "/ready").json()
    assert ready["checks"]["cache"]["ok"] and ready["checks"]["encoder"]["ok"]


class BrokenEncoder(Encoder):
    """An encoder whose model fails on every call."""

    def encode_batch(self, texts: Any) -> Any:
        raise RuntimeError("model crashed")


def test_a_failing_encoder_degrades_to_no_cache(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    broken = BrokenEncoder()
    broken._session = object()  # looks loaded; every embedding call fails
    settings = proxy_settings(upstream.url, embedding={"enabled": True}, cache={"enabled": True, "directory": None})
    proxy = proxy_factory(settings, broken)
    text, headers = ask(claude_client(proxy), f"Still answered? {marker()}")
    assert text == "Hello from claude-sonnet-5." and "x-cascadeflow-cache" not in headers
    assert 'cascadeflow_dependency_errors_total{dependency="encoder"}' in httpx.get(proxy.url + "/metrics").text
