"""`GET /v1/usage`: a user sees their own spend (every key of theirs), an admin key sees everyone's; per-day rows,
date ranges and groupings; errors in the caller's dialect."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.auth import hash_key
from router.replay.runner import BackgroundServer
from tests.auth.helpers import ask_anthropic, ask_openai
from tests.budgets.helpers import PRICES
from tests.support import ProxyFactory, marker, proxy_settings

KEYS = {"alice-1": "alice", "alice-2": "alice", "bob-1": "bob", "admin-flag": "ops", "admin-listed": "ops2"}


@pytest.fixture(scope="module")
def secrets() -> dict[str, str]:
    return {name: f"{name}-{marker()}" for name in KEYS}


@pytest.fixture(scope="module")
def ledger_proxy(proxy_factory: ProxyFactory, upstream: BackgroundServer, secrets: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    folder: Path = tmp_path_factory.mktemp("usage")
    keys = [{"key_sha256": hash_key(secret), "user": KEYS[name], "id": name, "admin": name == "admin-flag"}
            for name, secret in secrets.items()]
    settings = proxy_settings(upstream.url, model_info=PRICES, spend={"url": f"sqlite:///{folder}/spend.sqlite"},
                              auth={"keys": keys, "admin_keys": [hash_key(secrets["admin-listed"])]})
    proxy = proxy_factory(settings)
    for name, count in (("alice-1", 2), ("alice-2", 1), ("bob-1", 1)):
        for _ in range(count):
            assert ask_anthropic(proxy.url, secrets[name], marker()).status_code == 200
    assert ask_openai(proxy.url, secrets["bob-1"], marker() + " [[status:400]]").status_code == 400
    yield proxy


def usage(proxy: BackgroundServer, key: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{proxy.url}/v1/usage", params=params, headers={"authorization": f"Bearer {key}"})


def today() -> str:
    return datetime.now(tz=UTC).date().isoformat()


def test_a_user_sees_only_their_own_spend(ledger_proxy: BackgroundServer, secrets: dict[str, str]) -> None:
    report = usage(ledger_proxy, secrets["alice-2"]).json()
    assert report["object"] == "usage" and report["scope"] == "own" and report["end"] == today()
    assert [(row["date"], row["user"], row["requests"]) for row in report["data"]] == [(today(), "alice", 3)]
    (row,) = report["data"]
    assert row["actual_cost_usd"] > 0 and row["strong_only_cost_usd"] == row["actual_cost_usd"]  # pass-through
    assert row["saved_usd"] == 0 and row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert report["total"]["requests"] == 3
    by_key = usage(ledger_proxy, secrets["alice-1"], group_by="key").json()["data"]
    assert [(row["key_id"], row["requests"]) for row in by_key] == [("alice-1", 2), ("alice-2", 1)]
    bob = usage(ledger_proxy, secrets["bob-1"], user="bob").json()
    assert [(row["user"], row["requests"]) for row in bob["data"]] == [("bob", 2)]  # a failure is a row too
    assert usage(ledger_proxy, secrets["admin-flag"], user="ops").json()["data"] == []


def test_another_users_spend_is_refused(ledger_proxy: BackgroundServer, secrets: dict[str, str]) -> None:
    refused = usage(ledger_proxy, secrets["alice-1"], user="bob")
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error" and refused.json()["error"]["param"] == "user"
    anthropic = httpx.get(f"{ledger_proxy.url}/v1/usage", params={"user": "bob"},
                          headers={"x-api-key": secrets["alice-1"], "anthropic-version": "2023-06-01"})
    assert anthropic.status_code == 403 and anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "permission_error"
    assert httpx.get(f"{ledger_proxy.url}/v1/usage").status_code == 401


def test_an_admin_key_sees_everyone(ledger_proxy: BackgroundServer, secrets: dict[str, str]) -> None:
    for admin in ("admin-flag", "admin-listed"):  # `admin: true` on the key, or its digest in auth.admin_keys
        report = usage(ledger_proxy, secrets[admin]).json()
        assert report["scope"] == "all"
        assert [(row["user"], row["requests"]) for row in report["data"]] == [("alice", 3), ("bob", 2)]
        assert report["total"]["requests"] == 5
    bob = usage(ledger_proxy, secrets["admin-listed"], user="bob", group_by="key").json()["data"]
    assert [(row["user"], row["key_id"], row["requests"]) for row in bob] == [("bob", "bob-1", 2)]
    per_day = usage(ledger_proxy, secrets["admin-flag"], group_by="day").json()["data"]
    assert [(row["date"], row["requests"]) for row in per_day] == [(today(), 5)] and "user" not in per_day[0]


def test_date_ranges(ledger_proxy: BackgroundServer, secrets: dict[str, str]) -> None:
    key = secrets["admin-flag"]
    yesterday = (datetime.now(tz=UTC).date() - timedelta(days=1)).isoformat()
    assert usage(ledger_proxy, key, start=yesterday, end=yesterday).json()["data"] == []
    week = usage(ledger_proxy, key, days=1).json()
    assert week["start"] == week["end"] == today() and week["total"]["requests"] == 5
    assert usage(ledger_proxy, key, start=yesterday).json()["end"] == (
        datetime.now(tz=UTC).date() + timedelta(days=5)).isoformat()  # `days` (7) from `start`
    for params, param in (({"start": "2025-13-01"}, "start"), ({"start": today(), "end": yesterday}, "start"),
                          ({"days": "0"}, "days"), ({"group_by": "model"}, "group_by")):
        bad = usage(ledger_proxy, key, **params)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, params


def test_usage_without_a_ledger_is_not_found(proxy: BackgroundServer) -> None:
    missing = httpx.get(f"{proxy.url}/v1/usage")
    assert missing.status_code == 404 and "spend ledger is off" in missing.json()["error"]["message"]


def test_replicas_share_one_ledger_in_postgresql(upstream: BackgroundServer, tmp_path: Path) -> None:
    from router.app import create_app
    from tests.storage.conftest import postgres_database

    databases = postgres_database()
    url = next(databases)
    try:
        admin, user = "admin-" + marker(), "user-" + marker()
        keys = [{"key_sha256": hash_key(admin), "user": "ops", "admin": True},
                {"key_sha256": hash_key(user), "user": "dana"}]
        spend = {"url": url, "spool_path": str(tmp_path / "spend.spool.jsonl")}  # its journal next to it
        settings = proxy_settings(upstream.url, model_info=PRICES, spend=spend, auth={"keys": keys})
        with BackgroundServer(create_app(settings)) as first, BackgroundServer(create_app(settings)) as second:
            for proxy in (first, second, second):
                assert ask_openai(proxy.url, user, marker()).status_code == 200
        with BackgroundServer(create_app(settings)) as third:  # the first two stopped: every row is written
            report = usage(third, admin, group_by="day").json()
        assert report["total"]["requests"] == 3 and report["total"]["actual_cost_usd"] > 0
    finally:
        databases.close()
