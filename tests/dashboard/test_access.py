"""`/dashboard`: only an admin sees it (an admin key in a header or the sign-in cookie; without proxy keys,
loopback only); its summary counts the requests sent through the proxy, never shows prompt text unless content
logging is on, and the page's files are served by the proxy itself."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from router.api.dashboard import COOKIE, dashboard_admin
from router.auth import hash_key
from router.errors import PermissionDeniedError
from router.replay.runner import BackgroundServer
from router.types import Principal
from tests.auth.helpers import ask_anthropic
from tests.support import ProxyFactory, marker, proxy_settings

ADMIN, ANN, BOB = "cfr-admin-" + "a1" * 16, "cfr-ann-" + "b2" * 16, "cfr-bob-" + "c3" * 16
PRICES = {"claude-haiku-4-5": {"prices": {"input": 1.0, "output": 5.0}},
          "claude-opus-4-8": {"prices": {"input": 15.0, "output": 75.0}}}
RULE = {"name": "team", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
        "quality_threshold": 0.6}
PAGES = ("/dashboard", "/dashboard/api/summary", "/dashboard/assets/dashboard.js")


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keyed(proxy_factory: ProxyFactory, upstream: BackgroundServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackgroundServer, dict[str, str]]]:
    """A keyed proxy with the outcome log, the spend ledger and labels of every served draft, and its traffic:
    ann's two accepted drafts and one escalation, bob's pass-through request; the request id of each."""
    folder: Path = tmp_path_factory.mktemp("dashboard")
    keys = [{"key_sha256": hash_key(ADMIN), "user": "ops", "admin": True},
            {"key_sha256": hash_key(ANN), "user": "ann"}, {"key_sha256": hash_key(BOB), "user": "bob"}]
    settings = proxy_settings(
        upstream.url, auth={"keys": keys}, model_info=PRICES, cascade_rules=[RULE],
        outcome_log={"enabled": True, "url": f"sqlite:///{folder}/outcomes.sqlite", "spool_path": None,
                     "flush_interval_ms": 20},
        spend={"url": f"sqlite:///{folder}/spend.sqlite", "spool_path": None, "flush_interval_ms": 20},
        labels={"exploration_rate": 1.0})
    proxy = proxy_factory(settings)
    sent: dict[str, str] = {}
    for name, key, text in (("agreed-1", ANN, "[[text:The answer is 42.]]"), ("agreed-2", ANN, "[[text:It is 7.]]"),
                            ("escalated", ANN, "[[weak:claude-haiku-4-5]]"), ("pass", BOB, "hello")):
        model = "claude-haiku-4-5" if name == "pass" else "cascade/team"
        response = ask_anthropic(proxy.url, key, f"{text} secret-prompt-{marker()}", model=model)
        assert response.status_code == 200, response.text
        sent[name] = response.headers["x-request-id"]  # the proxy's id (an upstream's own is `request-id`)
    yield proxy, sent


def summary(proxy: BackgroundServer, **headers: str) -> httpx.Response:
    return httpx.get(proxy.url + "/dashboard/api/summary", params={"days": 7}, headers=headers, timeout=30)


def labelled_summary(proxy: BackgroundServer, labels: int) -> dict[str, Any]:
    """The summary once the background labels of the served drafts have landed."""
    deadline = time.monotonic() + 20
    while True:
        data: dict[str, Any] = summary(proxy, **bearer(ADMIN)).json()
        if data["quality"]["served"]["n"] >= labels or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def test_without_an_admin_key_nothing_is_shown(keyed: tuple[BackgroundServer, dict[str, str]]) -> None:
    proxy, _ = keyed
    for path in PAGES:
        assert httpx.get(proxy.url + path).status_code == 401, path
        for key in (ANN, BOB, "cfr-unknown-" + "d4" * 16):
            response = httpx.get(proxy.url + path, headers=bearer(key))
            assert response.status_code in (401, 403), (path, key)
            assert "saved_usd" not in response.text and "Latest decisions" not in response.text
        assert httpx.get(proxy.url + path, headers=bearer(ANN)).status_code == 403
        for key in (ANN, ADMIN):  # a key is not a session: the cookie holds only a session token
            assert httpx.get(proxy.url + path, cookies={COOKIE: key}).status_code == 401, key
    page = httpx.get(proxy.url + "/dashboard")
    assert 'action="/dashboard/login"' in page.text and "text/html" in page.headers["content-type"]


def test_an_admin_key_opens_the_page_and_its_files(keyed: tuple[BackgroundServer, dict[str, str]]) -> None:
    proxy, _ = keyed
    page = httpx.get(proxy.url + "/dashboard", headers=bearer(ADMIN))
    assert page.status_code == 200 and "/dashboard/assets/dashboard.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text, "no external CDN"
    for name, kind in (("dashboard.js", "javascript"), ("charts.js", "javascript"), ("dashboard.css", "css")):
        asset = httpx.get(f"{proxy.url}/dashboard/assets/{name}", headers={"x-api-key": ADMIN})
        assert asset.status_code == 200 and kind in asset.headers["content-type"] and len(asset.content) > 1000
    assert httpx.get(proxy.url + "/dashboard/assets/..%2Fapp.py", headers=bearer(ADMIN)).status_code == 404
    assert summary(proxy, **bearer(ADMIN)).status_code == 200
    refused = httpx.get(proxy.url + "/dashboard/api/summary", params={"days": 0}, headers=bearer(ADMIN))
    assert refused.status_code == 400 and "days" in refused.text


def test_the_sign_in_form_keeps_only_an_admin_key(keyed: tuple[BackgroundServer, dict[str, str]]) -> None:
    proxy, _ = keyed
    for key, status in (("", 401), ("wrong-key", 401), (ANN, 403)):
        response = httpx.post(proxy.url + "/dashboard/login", data={"key": key})
        assert response.status_code == status and COOKIE not in response.cookies, key
    with httpx.Client(base_url=proxy.url) as browser:
        response = browser.post("/dashboard/login", data={"key": ADMIN})
        assert response.status_code == 303 and response.headers["location"] == "/dashboard"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
        token = browser.cookies[COOKIE]
        assert ADMIN not in response.headers["set-cookie"] and ADMIN[10:] not in token and len(token) >= 40
        assert hash_key(ADMIN) not in token, "an opaque token, not the key nor its digest"
        assert browser.get("/dashboard").status_code == 200
        assert browser.get("/dashboard/api/summary").status_code == 200
        assert browser.get("/v1/usage").status_code == 401, "the cookie is for the dashboard alone"
        assert browser.post("/dashboard/logout").status_code == 303
        assert browser.get("/dashboard/api/summary").status_code == 401
    replayed = httpx.get(proxy.url + "/dashboard/api/summary", cookies={COOKIE: token})
    assert replayed.status_code == 401, "sign-out ended the session itself, not only the browser's cookie"


def test_without_proxy_keys_only_loopback_sees_it(proxy: BackgroundServer) -> None:
    assert httpx.get(proxy.url + "/dashboard").status_code == 200
    assert httpx.get(proxy.url + "/dashboard/api/summary").json()["sources"]["outcome_log"] == {"enabled": False}

    class Open:
        class authenticator:  # noqa: N801 - stands in for the services' authenticator
            mode = "pass_through"

            @staticmethod
            async def identify(headers: Any) -> Principal:
                return Principal(tenant="anonymous", mode="pass_through")

    for host, allowed in (("127.0.0.1", True), ("::1", True), ("10.1.2.3", False), ("203.0.113.9", False)):
        request = Request({"type": "http", "method": "GET", "path": "/dashboard", "headers": [],
                           "client": (host, 5000)})
        if allowed:
            assert asyncio.run(dashboard_admin(request, Open())).mode == "pass_through"  # type: ignore[arg-type]
        else:
            with pytest.raises(PermissionDeniedError):
                asyncio.run(dashboard_admin(request, Open()))  # type: ignore[arg-type]


def test_the_summary_counts_the_traffic_and_never_shows_prompts(
        keyed: tuple[BackgroundServer, dict[str, str]]) -> None:
    proxy, sent = keyed
    data = labelled_summary(proxy, labels=2)
    totals = data["totals"]
    assert totals["requests"] == 4 and totals["routes"]["draft"] == 2 and totals["routes"]["escalated"] == 1
    assert totals["routes"]["pass_through"] == 1
    assert totals["acceptance_rate"] == pytest.approx(2 / 3) and totals["escalation_rate"] == pytest.approx(1 / 3)
    assert 0 < totals["actual_usd"] < totals["strong_only_usd"] and totals["saved_usd"] > 0
    served = data["quality"]["served"]
    assert (served["n"], served["agreed"]) == (2, 2) and 0 < served["low"] < 1 and served["high"] == 1.0
    assert [rule["rule"] for rule in data["quality"]["by_rule"]] == ["cascade/team"]
    users = {row["user"]: row for row in data["spend_by_user"]["rows"]}
    assert data["spend_by_user"]["source"] == "spend_ledger" and set(users) == {"ann", "bob"}
    assert users["ann"]["requests"] == 3 and users["ann"]["saved_usd"] > 0 and users["bob"]["saved_usd"] == 0
    models = {row["model"] for row in data["spend_by_model"]}
    assert {"claude-haiku-4-5", "claude-opus-4-8"} <= models
    decisions = {row["request_id"]: row for row in data["decisions"]}
    assert set(sent.values()) <= set(decisions)
    escalated = decisions[sent["escalated"]]
    assert escalated["route"] == "escalated" and escalated["accepted"] is False
    assert escalated["confidence"] is not None and escalated["accept_threshold"] == 0.6
    accepted = decisions[sent["agreed-1"]]
    assert accepted["accept_threshold"] == 0.6 and accepted["label"] is True
    assert "secret-prompt" not in str(data) and "prompt" not in accepted, "no prompt text without content logging"
    assert data["sources"]["outcome_log"]["backend"] == "sqlite" and data["sources"]["content_logging"] is False


def test_the_page_files_ship_as_package_data() -> None:
    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["router.dashboard_assets"]
    assert "router.dashboard_assets" in setuptools["packages"]
    shipped = sorted(path.name for path in (root / "router" / "dashboard_assets").iterdir())
    assert shipped == ["charts.js", "dashboard.css", "dashboard.js", "index.html"]
    assert all(any(fnmatch(name, pattern) for pattern in patterns) for name in shipped)
