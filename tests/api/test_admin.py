"""The admin endpoints: the effective config with every secret masked, for admins only; live reloads, under
load too, without a failed request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from router.api.admin import admin
from router.app import create_app
from router.auth import hash_key
from router.errors import PermissionDeniedError
from router.reload import ConfigSource
from router.replay.runner import BackgroundServer
from router.settings import load_settings
from router.types import Principal
from tests.support import ProxyFactory, marker, proxy_settings

ADMIN_KEY, USER_KEY = "cfr-admin-" + "a1" * 16, "cfr-user-" + "b2" * 16
SECRETS = ("sk-provider-secret-1", "hdr-secret-2", "pg-secret-3", "otlp-secret-4")
CONFIG = """\
providers:
  anthropic: {{kind: anthropic, base_url: "{url}", api_key: sk-provider-secret-1}}
embedding: {{enabled: false}}
outcome_log: {{enabled: false}}
learned_router: {{enabled: false}}
verifier: {{enabled: false}}
reload: {{watch: false}}
cascade_rules:
  - name: team
    draft_model: {draft}
    verifier_model: claude-opus-4-8
    quality_threshold: {threshold}
"""


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_the_effective_config_is_for_admins_with_every_secret_masked(proxy_factory: ProxyFactory,
                                                                     upstream: BackgroundServer) -> None:
    settings = proxy_settings(
        upstream.url,
        auth={"keys": [{"key_sha256": hash_key(ADMIN_KEY), "user": "ops", "admin": True},
                       {"key_sha256": hash_key(USER_KEY), "user": "dev"}], "admin_keys": [hash_key("stored-admin")]},
        outcome_log={"enabled": False, "url": "postgresql://app:pg-secret-3@db.internal/outcomes"},
        tracing={"headers": {"x-honeycomb-team": "otlp-secret-4"}})
    providers = {**settings.providers, "anthropic": settings.providers["anthropic"].model_copy(
        update={"api_key": settings.providers["anthropic"].api_key.__class__(SECRETS[0]),
                "headers": {"x-org-auth": "hdr-secret-2"}})}
    proxy = proxy_factory(settings.model_copy(update={"providers": providers}))
    assert httpx.get(proxy.url + "/admin/config").status_code == 401
    assert httpx.get(proxy.url + "/admin/config", headers=bearer(USER_KEY)).status_code == 403
    response = httpx.get(proxy.url + "/admin/config", headers=bearer(ADMIN_KEY))
    assert response.status_code == 200, response.text
    config = response.json()["config"]
    assert config["providers"]["anthropic"]["api_key"] == "***"
    assert config["providers"]["anthropic"]["headers"] == {"x-org-auth": "***"}
    assert config["outcome_log"]["url"] == "postgresql://app:***@db.internal/outcomes"
    assert config["auth"]["keys"][0]["key_sha256"] == "***" and config["auth"]["keys"][0]["user"] == "ops"
    assert config["auth"]["admin_keys"] == ["***"] and config["auth"]["keys"][0]["admin"] is True
    assert config["providers"]["openai"]["base_url"].startswith("http://127.0.0.1")
    assert response.json()["reload"] == {"enabled": False}, "started without a file: nothing to reload"
    for secret in (*SECRETS, hash_key(ADMIN_KEY), hash_key(USER_KEY), hash_key("stored-admin"), "sk-proxy-openai"):
        assert secret not in response.text, secret


def test_without_proxy_keys_only_loopback_is_an_admin(proxy: BackgroundServer) -> None:
    assert httpx.get(proxy.url + "/admin/config").status_code == 200
    assert httpx.post(proxy.url + "/admin/config/reload").status_code == 404, "no file to reload"

    class Open:
        class authenticator:  # noqa: N801 - stands in for the services' authenticator
            mode = "pass_through"

    for host, allowed in (("127.0.0.1", True), ("::1", True), ("10.1.2.3", False), ("203.0.113.9", False)):
        request = Request({"type": "http", "method": "GET", "path": "/admin/config", "headers": [],
                           "client": (host, 5000)})
        caller = Principal(tenant="anonymous", mode="pass_through")
        if allowed:
            assert asyncio.run(admin(request, Open(), caller)) is caller  # type: ignore[arg-type]
        else:
            with pytest.raises(PermissionDeniedError):
                asyncio.run(admin(request, Open(), caller))  # type: ignore[arg-type]


@pytest.fixture
def live(tmp_path: Path, upstream: BackgroundServer) -> Iterator[tuple[BackgroundServer, Path]]:
    """A proxy started from a config file it reloads."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(url=upstream.url, draft="claude-haiku-4-5", threshold=0.6))
    environ = {"HOME": str(tmp_path)}
    settings = load_settings(path, environ=environ)
    with BackgroundServer(create_app(settings, config=ConfigSource(str(path)))) as server:
        yield server, path


def ask(proxy: BackgroundServer, text: str) -> httpx.Response:
    body = {"model": "cascade/team", "max_tokens": 32, "messages": [{"role": "user", "content": text}]}
    return httpx.post(proxy.url + "/v1/messages", json=body, timeout=30,
                      headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})


def reload(proxy: BackgroundServer) -> httpx.Response:
    return httpx.post(proxy.url + "/admin/config/reload", timeout=30)


def test_a_reload_changes_routing_at_once_and_a_bad_file_changes_nothing(
        live: tuple[BackgroundServer, Path], upstream: BackgroundServer) -> None:
    proxy, path = live
    question = f"What is 2+2? {marker()}"
    assert ask(proxy, question).headers["x-cascadeflow-draft-model"] == "claude-haiku-4-5"
    path.write_text(CONFIG.format(url=upstream.url, draft="claude-sonnet-5", threshold=0.7).replace(
        "name: team", "name: crew"))
    result = reload(proxy)
    assert result.status_code == 200 and result.json()["status"] == "applied"
    assert {"cascade_rules.0.quality_threshold", "cascade_rules.0.draft_model"} <= set(result.json()["applied"])
    assert "x-cascadeflow-route" not in ask(proxy, question).headers, "the renamed rule is gone: passed through"
    models = [entry["id"] for entry in httpx.get(proxy.url + "/v1/models", headers={"x-api-key": "k"}).json()["data"]]
    assert "cascade/crew" in models and "cascade/team" not in models
    path.write_text(CONFIG.format(url=upstream.url, draft="claude-sonnet-5", threshold=0.7))
    assert reload(proxy).json()["status"] == "applied"
    answered = ask(proxy, question)
    assert answered.headers["x-cascadeflow-draft-model"] == "claude-sonnet-5"
    assert answered.json()["content"][0]["text"] == "Hello from claude-sonnet-5."
    path.write_text(CONFIG.format(url=upstream.url, draft="claude-haiku-4-5", threshold="high"))
    refused = reload(proxy)
    assert refused.status_code == 422 and "cascade_rules.0.quality_threshold" in refused.json()["error"]
    assert ask(proxy, question).headers["x-cascadeflow-draft-model"] == "claude-sonnet-5", "the running one is kept"
    state = httpx.get(proxy.url + "/admin/config").json()
    assert state["config"]["cascade_rules"][0]["quality_threshold"] == 0.7
    assert state["reload"]["last"]["status"] == "rejected" and state["reload"]["file"] == str(path)


@pytest.mark.slow
def test_reloads_of_good_and_bad_files_under_load_fail_no_request(live: tuple[BackgroundServer, Path],
                                                                   upstream: BackgroundServer) -> None:
    proxy, path = live
    statuses: list[int] = []
    drafts: set[str] = set()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                body = {"model": "cascade/team", "max_tokens": 32,
                        "messages": [{"role": "user", "content": f"What is 2+2? {marker()}"}]}
                response = http.post(proxy.url + "/v1/messages", json=body,
                                     headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
                statuses.append(response.status_code)
                drafts.add(response.headers.get("x-cascadeflow-draft-model", ""))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    results = []
    try:
        for round_number in range(6):
            draft, threshold = (("claude-sonnet-5", 0.6), ("claude-haiku-4-5", "high"),
                                ("claude-haiku-4-5", 0.6))[round_number % 3]
            path.write_text(CONFIG.format(url=upstream.url, draft=draft, threshold=threshold))
            results.append(reload(proxy).json()["status"])
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    assert results == ["applied", "rejected", "applied"] * 2
    assert len(statuses) > 50 and set(statuses) == {200}, f"{len(statuses)} requests: {set(statuses)}"
    assert drafts == {"claude-haiku-4-5", "claude-sonnet-5"}
