"""Configured model info against the scripted upstream: a local draft's log-probs ask and its configured prices."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from router.pipeline.draft import DraftStep
from router.protocol.hub import to_hub_request
from router.providers.call import Upstream
from router.providers.registry import ProviderRegistry
from router.replay.answers import Answer, UpstreamRequest
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource
from router.settings import CascadeRule, Settings
from router.types import ClientCall, Dialect, Endpoint, Principal
from tests.support import ProxyFactory, item_body, marker, proxy_settings, received_with

QWEN = "qwen2.5-coder-0.5b"
PRICES = {"input": 120.0, "output": 360.0}  # USD per million tokens, large enough for the headers' 8 decimals
RULE = {"request_model": "gpt-4o", "draft_model": "local-coder", "verifier_model": "gpt-4o",
        "quality_threshold": 0.6}
CHAT_TOOL = {"type": "function", "function": {"name": "Read", "description": "Read a file.", "parameters": {
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}}


def local_settings(upstream: BackgroundServer, **model_info: Any) -> Settings:
    """The scripted upstream, with a llama.cpp-like `local` provider serving `local-coder` as QWEN."""
    base = proxy_settings(upstream.url)
    providers: dict[str, Any] = {name: provider.model_dump() for name, provider in base.providers.items()}
    for provider in providers.values():
        provider["api_key"] = provider["api_key"].get_secret_value()
    providers["local"] = {"kind": "openai", "base_url": upstream.url + "/v1", "supports_responses": False,
                          "supports_logprobs": True}
    models = [route.model_dump() for route in base.models]
    models.append({"match": "local-coder", "provider": "local", "upstream_model": QWEN})
    return proxy_settings(upstream.url, providers=providers, models=models, cascade_rules=[RULE],
                          model_info=model_info)


def client_call(text: str, dialect: Dialect, **extra: Any) -> ClientCall:
    body: dict[str, Any] = {"model": "gpt-4o", "max_tokens": 64, "stream": True,
                            "messages": [{"role": "user", "content": text}], **extra}
    endpoint = Endpoint.CHAT if dialect is Dialect.OPENAI_CHAT else Endpoint.MESSAGES
    return ClientCall(dialect, endpoint, body, orjson.dumps(body), {}, "", Principal("t", "pass_through"),
                      "req_capabilities")


def draft_body(upstream: BackgroundServer, settings: Settings, dialect: Dialect = Dialect.OPENAI_CHAT,
               **extra: Any) -> dict[str, Any]:
    """The body the upstream received for the draft of a client's request (run through DraftStep)."""
    tag = marker()
    call = client_call(f"Read the file {tag}", dialect, **extra)

    async def run() -> None:
        registry = ProviderRegistry(settings)
        await registry.open()
        try:
            step = DraftStep(registry, Upstream(), settings.model_info)
            draft = await step.run(call, CascadeRule.model_validate(RULE), to_hub_request(call))
            assert draft.failure is None, draft.failure
        finally:
            await registry.close()

    asyncio.run(run())
    (item,) = received_with(upstream, tag)
    body: dict[str, Any] = item_body(item)
    assert body["model"] == QWEN and body["stream"] is True
    return body


@pytest.mark.parametrize("client_asks", [False, True])
def test_a_chat_draft_with_tools_gets_no_logprobs_when_the_model_cannot(upstream: BackgroundServer,
                                                                        client_asks: bool) -> None:
    settings = local_settings(upstream, **{QWEN: {"logprobs": {"supported": True, "with_tools": False}}})
    extra: dict[str, Any] = {"logprobs": True, "top_logprobs": 2} if client_asks else {}
    body = draft_body(upstream, settings, tools=[CHAT_TOOL], **extra)
    assert body["tools"] and "logprobs" not in body and "top_logprobs" not in body
    assert draft_body(upstream, settings)["logprobs"] is True, "without tools they are asked for"


def test_a_claude_code_tool_turn_on_a_local_chat_draft_asks_no_logprobs(upstream: BackgroundServer) -> None:
    settings = local_settings(upstream, **{QWEN: {"logprobs": {"supported": True}}})
    tool = {"name": "Read", "description": "Read a file.", "input_schema": CHAT_TOOL["function"]["parameters"]}
    body = draft_body(upstream, settings, Dialect.ANTHROPIC, tools=[tool])
    assert body["tools"] and "logprobs" not in body
    assert draft_body(upstream, settings, Dialect.ANTHROPIC)["logprobs"] is True


def test_logprobs_with_tools_when_the_model_info_says_they_work(upstream: BackgroundServer) -> None:
    settings = local_settings(upstream, **{"qwen2.5-*": {"logprobs": {"with_tools": True}}})
    assert draft_body(upstream, settings, tools=[CHAT_TOOL])["logprobs"] is True


def test_an_unconfigured_draft_follows_its_provider_but_never_with_tools(upstream: BackgroundServer) -> None:
    settings = local_settings(upstream)
    assert draft_body(upstream, settings)["logprobs"] is True
    assert "logprobs" not in draft_body(upstream, settings, tools=[CHAT_TOOL])


def test_the_draft_is_capped_to_the_configured_output_limit(upstream: BackgroundServer) -> None:
    settings = local_settings(upstream, **{QWEN: {"context_window": 4096, "max_output_tokens": 32}})
    assert draft_body(upstream, settings)["max_tokens"] == 32


def scripted_tokens(body: dict[str, Any]) -> tuple[int, int]:
    """The (input, output) tokens the scripted upstream answered a chat body with."""
    answer = asyncio.run(ScriptedSource().answer(UpstreamRequest("openai_chat", body["model"], body)))
    assert isinstance(answer, Answer)
    return answer.input_tokens, answer.output_tokens


def configured_usd(tokens: tuple[int, int]) -> float:
    return (tokens[0] * PRICES["input"] + tokens[1] * PRICES["output"]) / 1_000_000


def actual_cost_metric(proxy: BackgroundServer) -> float:
    want = 'cascadeflow_cost_usd_total{kind="actual"} '
    lines = httpx.get(proxy.url + "/metrics").text.splitlines()
    return next((float(line[len(want):]) for line in lines if line.startswith(want)), 0.0)


@pytest.mark.parametrize("stream", [False, True])
def test_a_local_draft_is_priced_from_the_config(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                 stream: bool) -> None:
    proxy = proxy_factory(local_settings(upstream, **{"qwen2.5-*": {"prices": PRICES}}))
    tag = marker()
    body: dict[str, Any] = {"model": "gpt-4o", "max_tokens": 64, "stream": stream,
                            "messages": [{"role": "user", "content": f"What is 2+2? {tag}"}]}
    response = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"authorization": "Bearer k", "x-cascadeflow-force": "draft"})
    assert response.status_code == 200 and response.headers["x-cascadeflow-draft-accepted"] == "true"
    (item,) = received_with(upstream, tag)
    assert item_body(item)["model"] == QWEN
    expected = configured_usd(scripted_tokens(item_body(item)))
    assert expected > 0
    assert float(response.headers["x-cascadeflow-actual-cost"]) == pytest.approx(expected, abs=1e-8)
    assert actual_cost_metric(proxy) == pytest.approx(expected, rel=1e-9)


def test_an_escalated_local_draft_is_wasted_at_its_configured_price(proxy_factory: ProxyFactory,
                                                                     upstream: BackgroundServer) -> None:
    proxy = proxy_factory(local_settings(upstream, **{QWEN: {"prices": PRICES}}))
    tag = marker()
    body = {"model": "gpt-4o", "max_tokens": 64, "messages": [{"role": "user", "content": f"[[weak:{QWEN}]] {tag}"}]}
    response = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"authorization": "Bearer k"})
    assert response.status_code == 200 and response.headers["x-cascadeflow-route"] == "escalated"
    draft = next(item_body(item) for item in received_with(upstream, tag) if item_body(item)["model"] == QWEN)
    wasted = configured_usd(scripted_tokens(draft))
    assert float(response.headers["x-cascadeflow-draft-cost-wasted"]) == pytest.approx(wasted, abs=1e-8)
    assert float(response.headers["x-cascadeflow-actual-cost"]) > wasted > 0
