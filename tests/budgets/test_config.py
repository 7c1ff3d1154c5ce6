"""Budgets and admin keys in the configuration, on keys made at run time (stores made before them included), and
the scopes a keyed caller is held to."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from router.auth import Authenticator
from router.auth_keys.admission import KeyPrincipal
from router.auth_keys.records import hash_key, new_key
from router.auth_keys.store import open_key_store
from router.budgets.core import BudgetLimits, BudgetScope
from router.cli import main
from router.errors import ConfigError
from router.settings import load_settings
from tests.auth.helpers import REDIS_URL, drop_prefix, redis_or_skip, redis_prefix

ALICE, OPS = hash_key("alice-key"), hash_key("ops-key")
CONFIG = f"""
auth:
  keys:
    - {{key_sha256: {ALICE}, user: alice, tier: pro, daily_budget_usd: 50}}
    - {{key_sha256: {OPS}, user: ops}}
  admin_keys: [{OPS.upper()}]
  tiers:
    pro: {{rpm: 60, tpm: 200000, max_concurrent: 8, daily_budget_usd: 20, monthly_budget_usd: 300,
           total: {{monthly_budget_usd: 1000}}}}
  users:
    alice: {{daily_budget_usd: 5}}
"""


@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests.storage.conftest import postgres_database

    yield from postgres_database()


def test_the_issues_configuration_names(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    settings = load_settings(path, environ={})
    assert settings.auth.users["alice"].daily_budget_usd == 5.0 and settings.auth.admin_keys == [OPS]
    assert settings.spend.url == f"sqlite:///{tmp_path}/var/spend.sqlite"
    assert settings.spend.spool_path == str(tmp_path / "var" / "spend.spool.jsonl")
    authenticator = Authenticator(settings.auth)
    alice = authenticator.authenticate({"x-api-key": "alice-key"})
    assert isinstance(alice, KeyPrincipal) and not alice.admin
    assert alice.budgets == (BudgetScope("key:cfg-" + ALICE[:10], BudgetLimits(daily_usd=50.0)),
                             BudgetScope("user:alice", BudgetLimits(daily_usd=5.0, monthly_usd=300.0)),
                             BudgetScope("tier:pro", BudgetLimits(monthly_usd=1000.0)))
    assert [scope.name for scope in alice.scopes] == ["user:alice"]  # the tier's rates still hold per user
    ops = authenticator.authenticate({"authorization": "Bearer ops-key"})
    assert isinstance(ops, KeyPrincipal) and ops.admin and ops.budgets == ()


def test_the_spend_ledger_shares_the_outcome_logs_postgresql(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("outcome_log: {url: 'postgresql://db/cf'}\n")
    assert load_settings(path, environ={}).spend.url == "postgresql://db/cf"
    path.write_text("spend: {url: 'postgresql://db/spend'}\noutcome_log: {url: 'postgresql://db/cf'}\n")
    assert load_settings(path, environ={}).spend.url == "postgresql://db/spend"


@pytest.mark.parametrize(("text", "where"), [
    ("auth: {admin_keys: [nothex]}", "auth.admin_keys"),
    ("auth: {users: {bob: {daily_budget_usd: -1}}}", "auth.users.bob.daily_budget_usd"),
    ("auth: {tiers: {t: {total: {monthly_budget_usd: x}}}}", "auth.tiers.t.total.monthly_budget_usd"),
    ("spend: {url: 'mysql://x'}", "spend.url"),
])
def test_bad_budget_settings_name_their_key(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_settings(path, environ={})


def test_keys_made_at_run_time_carry_budgets_and_the_admin_flag(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"auth:\n  mode: api_key\n  store: sqlite:///{tmp_path}/keys.sqlite\n")
    assert main(["keys", "create", "--user", "carol", "--daily-budget-usd", "2.5", "--monthly-budget-usd", "40",
                 "--admin", "--config", str(config)]) == 0
    key = capsys.readouterr().out.strip()
    assert main(["keys", "list", "--config", str(config)]) == 0
    assert "day=$2.5,month=$40,admin" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["keys", "create", "--user", "x", "--daily-budget-usd", "-1", "--config", str(config)])
    assert "must be a non-negative amount of USD" in capsys.readouterr().err
    authenticator = Authenticator(load_settings(config, environ={}).auth)
    asyncio.run(authenticator.start())
    carol = authenticator.authenticate({"x-api-key": key})
    assert isinstance(carol, KeyPrincipal) and carol.admin
    assert carol.budgets == (BudgetScope(f"key:{key.split('_')[1]}", BudgetLimits(2.5, 40.0)),)


OLD_SCHEMA = ("CREATE TABLE cascadeflow_proxy_keys (id TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE, "
              "user_name TEXT NOT NULL, tier TEXT, rpm INTEGER, tpm INTEGER, max_concurrent INTEGER, "
              "created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)")
OLD_ROW = ("kold", hash_key("old"), "olga", None, 5, None, None, 1.0, None)


async def _old_store_then_new_key(url: str) -> None:
    store = open_key_store(url)
    try:
        (old,) = await store.load()
        assert (old.id, old.rpm, old.daily_budget_usd, old.admin) == ("kold", 5, None, False)
        _, record = new_key("nina", daily_budget_usd=1.5, admin=True)
        await store.create(record)
        loaded = {key.id: key for key in await store.load()}
        assert loaded[record.id].daily_budget_usd == 1.5 and loaded[record.id].admin
        assert (await store.revoke("kold")) is not None
    finally:
        await store.close()


def test_a_sqlite_key_store_made_before_budgets_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute(OLD_SCHEMA)
        connection.execute("INSERT INTO cascadeflow_proxy_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", OLD_ROW)
    asyncio.run(_old_store_then_new_key(f"sqlite:///{path}"))


def test_a_postgresql_key_store_made_before_budgets_gains_the_columns(pg_url: str) -> None:
    async def prepare() -> None:
        import asyncpg

        connection = await asyncpg.connect(pg_url)
        try:
            await connection.execute(OLD_SCHEMA)
            await connection.execute("INSERT INTO cascadeflow_proxy_keys VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                                     *OLD_ROW)
        finally:
            await connection.close()

    asyncio.run(prepare())
    asyncio.run(_old_store_then_new_key(pg_url))


async def test_a_redis_key_record_from_before_budgets_still_reads() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    try:
        old = dict(zip(("id", "key_sha256", "user_name", "tier", "rpm", "tpm", "max_concurrent", "created_at",
                        "revoked_at"), OLD_ROW, strict=True))
        await client.hset(f"{prefix}:keys", "kold", orjson.dumps(old))
        await client.incr(f"{prefix}:keys:version")
        store = open_key_store(REDIS_URL, redis_prefix=prefix)
        try:
            (loaded,) = await store.load()
            assert (loaded.id, loaded.rpm, loaded.daily_budget_usd, loaded.admin) == ("kold", 5, None, False)
        finally:
            await store.close()
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()
