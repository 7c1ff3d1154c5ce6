"""Hybrid mode: a client's own provider key is forwarded, and never exchanged for the operator's configured key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from router.auth import Authenticator, hash_key
from router.auth_settings import AuthSettings
from router.providers.registry import NoCredentials, ProviderRegistry, upstream_headers
from router.replay.runner import BackgroundServer
from tests.auth.helpers import ask_anthropic, ask_openai
from tests.support import ProxyFactory, marker, proxy_settings, received_with

OPERATOR_KEYS = ("sk-proxy-anthropic", "sk-proxy-openai")
PROXY_KEY = "hybrid-proxy-key"


def hybrid(**sections: Any) -> Any:
    return proxy_settings("http://127.0.0.1:9", auth={
        "mode": "hybrid", "keys": [{"key_sha256": hash_key(PROXY_KEY), "user": "ops"}]}, **sections)


def test_a_forwarded_key_never_falls_back_to_the_configured_one() -> None:
    settings = hybrid()
    registry = ProviderRegistry(settings)
    anthropic, openai = registry.providers["anthropic"], registry.providers["openai"]
    auth = Authenticator(settings.auth)
    forwarded = auth.authenticate({"authorization": "Bearer garbage"})
    assert forwarded.own_key_only and forwarded.mode == "pass_through"
    same = upstream_headers(openai, {"authorization": "Bearer garbage"}, forwarded, client_family="openai")
    assert same["authorization"] == "Bearer garbage"
    with pytest.raises(NoCredentials) as refused:  # an OpenAI client's key cannot pay for an Anthropic model
        upstream_headers(anthropic, {"authorization": "Bearer garbage"}, forwarded, client_family="openai")
    assert refused.value.status_code == 401
    with pytest.raises(NoCredentials):  # nor for background work on its behalf, whatever the family
        upstream_headers(openai, {}, forwarded, client_family="openai", background=True)
    keyed = auth.authenticate({"x-api-key": PROXY_KEY})
    assert upstream_headers(anthropic, {}, keyed, client_family="openai")["x-api-key"] == "sk-proxy-anthropic"
    plain = Authenticator(AuthSettings()).authenticate({"authorization": "Bearer mine"})
    assert not plain.own_key_only  # pass-through mode (loopback only) keeps serving keyless clients as before
    assert upstream_headers(anthropic, {}, plain, client_family="openai")["x-api-key"] == "sk-proxy-anthropic"


def carries_operator_key(item: Any) -> bool:
    headers = item["headers"] if isinstance(item, dict) else item.headers
    return any(key in value for value in headers.values() for key in OPERATOR_KEYS)


def test_hybrid_proxy_spends_the_configured_key_only_for_a_valid_proxy_key(
        proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    rule = {"request_model": "hybrid-cascade", "draft_model": "gpt-4o-mini", "verifier_model": "claude-haiku-4-5",
            "quality_threshold": 0.0}
    settings = proxy_settings(upstream.url, auth={
        "mode": "hybrid", "keys": [{"key_sha256": hash_key(PROXY_KEY), "user": "ops"}]}, cascade_rules=[rule])
    proxy = proxy_factory(settings)
    tag = marker()
    crossed = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30, headers={"authorization": "Bearer garbage"},
                         json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": tag}]})
    assert crossed.status_code == 401 and crossed.json()["error"]["type"] == "authentication_error"
    assert ask_anthropic(proxy.url, "garbage", tag, model="gpt-4o-mini").status_code == 401
    assert ask_anthropic(proxy.url, "", tag).status_code == 401  # no key at all
    assert received_with(upstream, tag) == []

    own = marker()
    assert ask_anthropic(proxy.url, "sk-ant-client", own).status_code == 200
    (forwarded,) = received_with(upstream, own)
    assert forwarded["headers"]["x-api-key"] == "sk-ant-client" and not carries_operator_key(forwarded)

    cascade = marker()  # the draft is another family's: skipped, not paid with the operator's key
    assert ask_anthropic(proxy.url, "sk-ant-client", cascade, model="hybrid-cascade").status_code == 200
    seen = received_with(upstream, cascade)
    assert seen and not any(carries_operator_key(item) for item in seen)

    keyed = marker()
    assert ask_openai(proxy.url, PROXY_KEY, keyed, model="claude-haiku-4-5").status_code == 200
    (paid,) = received_with(upstream, keyed)
    assert paid["headers"]["x-api-key"] == "sk-proxy-anthropic"
