"""Proxy keys made at run time: the CLI round trip, the stores (digests only), the auth modes, revocation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.auth import Authenticator
from router.auth_keys.records import hash_key, new_key
from router.auth_keys.store import KeyStore, open_key_store
from router.auth_settings import AuthSettings
from router.cli import main
from router.errors import AuthenticationError
from router.replay.runner import BackgroundServer
from router.settings import Settings, load_settings
from tests.auth.helpers import REDIS_URL, ask_anthropic, ask_openai, drop_prefix, redis_or_skip, redis_prefix
from tests.support import ProxyFactory, marker, proxy_settings, received_with


def write_config(tmp_path: Path, store: str, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"auth:\n  mode: api_key\n  store: {store}\n  tiers: {{free: {{rpm: 100}}}}\n{extra}")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["keys", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests.storage.conftest import postgres_database

    yield from postgres_database()


def test_cli_round_trip_and_a_revoked_key_is_refused_within_a_second(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        proxy_factory: ProxyFactory, upstream: BackgroundServer) -> None:
    caplog.set_level(logging.DEBUG)
    store = f"sqlite:///{tmp_path}/keys.sqlite"
    config = write_config(tmp_path, store)
    code, out, err = cli(capsys, "create", "--user", "bob", "--tier", "free", "--rpm", "50", "--config", str(config))
    assert code == 0
    key = out.strip()
    assert key.startswith("cfk_") and out.count(key) == 1 and key not in err  # printed once, on stdout alone
    key_id = key.split("_")[1]
    assert key_id in err and "bob" in err

    raw = (tmp_path / "keys.sqlite").read_bytes()
    assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw and hash_key(key).encode() in raw
    assert (tmp_path / "keys.sqlite").stat().st_mode & 0o077 == 0

    code, out, _ = cli(capsys, "list", "--config", str(config))
    assert code == 0 and key_id in out and "bob" in out and "free" in out and "rpm=50" in out and key not in out

    proxy = proxy_factory(proxy_settings(upstream.url, auth={"mode": "api_key", "store": store}))
    tag = marker()
    assert ask_anthropic(proxy.url, key, tag).status_code == 200
    assert ask_openai(proxy.url, key, tag).status_code == 200
    assert len(received_with(upstream, tag)) == 2
    assert ask_anthropic(proxy.url, "cfk_nope", tag).status_code == 401

    code, out, _ = cli(capsys, "revoke", key_id, "--config", str(config))
    assert code == 0 and key_id in out
    revoked_at = time.monotonic()
    while (anthropic := ask_anthropic(proxy.url, key, "polling")).status_code == 200:
        assert time.monotonic() - revoked_at < 1.5, "still accepted 1.5 s after the revocation"
        time.sleep(0.05)
    assert time.monotonic() - revoked_at <= 1.3
    assert anthropic.status_code == 401
    assert anthropic.json()["type"] == "error" and anthropic.json()["error"]["type"] == "authentication_error"
    after = marker()
    openai = ask_openai(proxy.url, key, after)
    assert openai.status_code == 401 and openai.json()["error"]["type"] == "authentication_error"
    assert ask_anthropic(proxy.url, key, after).status_code == 401 and received_with(upstream, after) == []

    code, out, _ = cli(capsys, "list", "--config", str(config))
    assert key_id not in out
    code, out, _ = cli(capsys, "list", "--all", "--config", str(config))
    assert key_id in out
    assert cli(capsys, "revoke", "knope", "--config", str(config))[0] == 1
    assert key not in caplog.text


def test_cli_refuses_an_unknown_tier_and_bad_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/keys.sqlite")
    code, out, err = cli(capsys, "create", "--user", "bob", "--tier", "gold", "--config", str(config))
    assert code == 2 and out == "" and "unknown tier 'gold'" in err
    with pytest.raises(SystemExit):
        main(["keys", "create", "--user", "bob", "--rpm", "0", "--config", str(config)])
    assert not (tmp_path / "keys.sqlite").exists()


def test_the_store_follows_the_shared_state_and_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, "sqlite:///var/k.sqlite"), environ={})
    assert settings.auth.store == f"sqlite:///{tmp_path}/var/k.sqlite" and settings.auth.limiter_redis_url is None
    (tmp_path / "plain.yaml").write_text("data_dir: state\n")
    plain = load_settings(tmp_path / "plain.yaml", environ={})
    assert plain.auth.store == f"sqlite:///{tmp_path}/state/var/keys.sqlite" and plain.auth.mode is None
    (tmp_path / "shared.yaml").write_text("cache: {enabled: true, mode: redis, redis_url: 'redis://r:6379/1'}\n")
    shared = load_settings(tmp_path / "shared.yaml", environ={})
    assert shared.auth.store == "redis://r:6379/1" and shared.auth.limiter_redis_url == "redis://r:6379/1"
    (tmp_path / "pg.yaml").write_text("outcome_log: {url: 'postgresql://db/cf'}\n"
                                      "cache: {enabled: true, mode: redis, redis_url: 'redis://r:6379/1'}\n")
    pg = load_settings(tmp_path / "pg.yaml", environ={})
    assert pg.auth.store == "postgresql://db/cf" and pg.auth.limiter_redis_url == "redis://r:6379/1"


def test_a_public_host_needs_keys_or_api_key_mode() -> None:
    assert Settings(server={"host": "0.0.0.0"}, auth={"mode": "api_key"}).auth.requires_keys
    for auth in ({}, {"mode": "hybrid"}, {"mode": "pass_through"}):
        with pytest.raises(ValueError, match="not loopback"):
            Settings(server={"host": "0.0.0.0"}, auth=auth)
    with pytest.raises(ValueError, match="unknown tier 'gold'"):
        AuthSettings(default_tier="gold")


async def store_round_trip(store: KeyStore) -> None:
    try:
        assert await store.load() == []
        key, record = new_key("alice", tier="free", rpm=5)
        await store.create(record)
        (loaded,) = await store.load()
        assert loaded == record and loaded.key_sha256 == hash_key(key) and key not in repr(loaded)
        revoked = await store.revoke(record.id)
        assert revoked is not None and revoked.revoked_at is not None and not revoked.active
        again = await store.revoke(record.id)
        assert again is not None and again.revoked_at == revoked.revoked_at
        assert await store.revoke("missing") is None
        assert [item.active for item in await store.load()] == [False]
    finally:
        await store.close()


async def test_sqlite_store_round_trip_creates_nothing_until_a_key(tmp_path: Path) -> None:
    store = open_key_store(f"sqlite:///{tmp_path}/sub/keys.sqlite")
    assert await store.load() == [] and await store.revoke("x") is None
    assert not (tmp_path / "sub").exists()
    await store_round_trip(store)


async def test_postgres_store_round_trip(pg_url: str) -> None:
    await store_round_trip(open_key_store(pg_url))


async def test_redis_store_round_trip() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    try:
        await store_round_trip(open_key_store(REDIS_URL, redis_prefix=prefix))
        stored = await client.hgetall(f"{prefix}:keys")
        assert all(b"cfk_" not in value for value in stored.values())
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


async def stored_authenticator(tmp_path: Path, **auth: Any) -> tuple[Authenticator, KeyStore]:
    url = f"sqlite:///{tmp_path}/keys.sqlite"
    return Authenticator(AuthSettings(store=url, refresh_interval_s=0.05, **auth)), open_key_store(url)


async def test_auto_mode_requires_keys_once_the_store_holds_one(tmp_path: Path) -> None:
    auth, store = await stored_authenticator(tmp_path)
    principal = await auth.identify({"x-api-key": "sk-ant-own"})
    assert auth.policy == "pass_through" and principal.mode == "pass_through"
    key, record = new_key("carol")
    await store.create(record)
    await asyncio.sleep(0.06)
    with pytest.raises(AuthenticationError, match="invalid"):
        await auth.identify({"x-api-key": "sk-ant-own"})
    principal = await auth.identify({"authorization": f"Bearer {key}"})
    assert str(auth.policy) == "api_key" and principal.tenant == "user:carol" and principal.credential_headers == ()
    assert key not in repr(principal)


async def test_hybrid_forwards_provider_keys_and_never_a_proxy_key(tmp_path: Path) -> None:
    auth, store = await stored_authenticator(tmp_path, mode="hybrid")
    key, record = new_key("dave")
    await store.create(record)
    assert (await auth.identify({"x-api-key": key})).tenant == "user:dave"
    forwarded = await auth.identify({"x-api-key": "sk-ant-real"})
    assert forwarded.mode == "pass_through" and dict(forwarded.credential_headers) == {"x-api-key": "sk-ant-real"}
    with pytest.raises(AuthenticationError, match="invalid"):
        await auth.identify({"x-api-key": "cfk_kdeadbeef_guess"})
    with pytest.raises(AuthenticationError, match="missing"):
        await auth.identify({})
    await store.revoke(record.id)
    await asyncio.sleep(0.06)
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth.identify({"x-api-key": key})


async def test_explicit_pass_through_ignores_stored_keys(tmp_path: Path) -> None:
    auth, store = await stored_authenticator(tmp_path, mode="pass_through")
    key, record = new_key("erin")
    await store.create(record)
    assert auth.directory.store is None
    assert (await auth.identify({"x-api-key": key})).mode == "pass_through"


async def test_config_and_stored_keys_are_both_accepted(tmp_path: Path) -> None:
    auth, store = await stored_authenticator(
        tmp_path, keys=[{"key_sha256": hash_key("config-key"), "user": "frank", "tier": "free"}],
        tiers={"free": {"rpm": 10, "total": {"tpm": 1000}}})
    key, record = new_key("gina", rpm=3)
    await store.create(record)
    configured = await auth.identify({"x-api-key": "config-key"})
    stored = await auth.identify({"x-api-key": key})
    assert auth.policy == "api_key" and configured.tenant == "user:frank" and stored.tenant == "user:gina"
    assert [scope.name for scope in configured.scopes] == ["user:frank", "tier:free"]  # type: ignore[attr-defined]
    assert [scope.name for scope in stored.scopes] == [f"key:{record.id}"]  # type: ignore[attr-defined]


async def test_an_unreadable_store_is_a_503_not_a_401(tmp_path: Path) -> None:
    (tmp_path / "keys.sqlite").write_text("not a database")
    auth = Authenticator(AuthSettings(mode="api_key", store=f"sqlite:///{tmp_path}/keys.sqlite",
                                      keys=[{"key_sha256": hash_key("config-key"), "user": "h"}]))
    assert (await auth.identify({"x-api-key": "config-key"})).tenant == "user:h"
    with pytest.raises(Exception, match="key store cannot be read") as raised:
        await auth.identify({"x-api-key": "cfk_kabc_def"})
    assert getattr(raised.value, "status_code", None) == 503 and auth.status()["ok"] is False
