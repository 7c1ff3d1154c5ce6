"""Dashboard sessions: the cookie is an opaque token (never the key), sessions expire, sign-out ends them, every
replica sharing a Redis knows them, and a revoked admin key stops its sessions."""

from __future__ import annotations

import asyncio
import time
from contextlib import closing
from pathlib import Path

import httpx

from router.api.dashboard import COOKIE
from router.auth import hash_key
from router.auth_keys.records import new_key
from router.auth_keys.store import open_key_store
from router.dashboard.sessions import LocalSessions, RedisSessions, Sessions, token_digest
from router.replay.runner import BackgroundServer
from router.storage.redis_health import RedisHealth
from tests.auth.helpers import REDIS_URL, drop_prefix, redis_or_skip, redis_prefix
from tests.support import ProxyFactory, proxy_settings

DIGEST = hash_key("cfr-admin-" + "f6" * 16)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_session_resolves_to_its_key_digest_until_it_expires() -> None:
    clock = Clock()
    sessions = Sessions(LocalSessions(clock), ttl_s=60.0, clock=clock)
    token = await sessions.open(DIGEST)
    other = await sessions.open(DIGEST)
    assert token != other and len(token) >= 40 and DIGEST not in token
    assert await sessions.resolve(token) == DIGEST
    assert await sessions.resolve(token + "x") is None and await sessions.resolve("") is None
    assert await sessions.store.get(token) is None, "kept by the token's digest, not the token"
    clock.now += 59.0
    assert await sessions.resolve(token) == DIGEST
    await sessions.close(other)
    assert await sessions.resolve(other) is None, "signed out"
    clock.now += 1.0
    assert await sessions.resolve(token) is None, "expired"
    assert await sessions.store.get(token_digest(token)) is None, "an expired session is dropped"


async def test_local_sessions_stay_bounded() -> None:
    clock = Clock()
    store = LocalSessions(clock, limit=3)
    sessions = Sessions(store, ttl_s=10.0, clock=clock)
    tokens = [await sessions.open(DIGEST) for _ in range(5)]
    assert [await sessions.resolve(token) for token in tokens] == [None, None, DIGEST, DIGEST, DIGEST]


async def test_replicas_share_sessions_through_redis() -> None:
    client = await redis_or_skip()
    prefix, clock = redis_prefix(), Clock()
    healths = [RedisHealth(REDIS_URL), RedisHealth(REDIS_URL)]
    first, second = (Sessions.build(health, prefix, clock) for health in healths)
    try:
        token = await first.open(DIGEST)
        assert await second.resolve(token) == DIGEST, "the other replica knows it"
        stored = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        assert stored == [f"{prefix}:dashboard:session:{token_digest(token)}".encode()]
        value = await client.get(stored[0])
        assert token.encode() not in value and b"cfr-admin" not in value
        assert 0 < await client.pttl(stored[0]) <= first.ttl_s * 1000
        await second.close(token)
        assert await first.resolve(token) is None, "signed out on one replica, ended on all"
        later = await first.open(DIGEST)
        clock.now += first.ttl_s
        assert await second.resolve(later) is None, "expired"
    finally:
        for sessions, health in zip((first, second), healths, strict=True):
            await sessions.stop()
            await health.close()
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_without_redis_the_replica_keeps_its_own_sessions() -> None:
    health = RedisHealth("redis://127.0.0.1:1/0", timeout_s=0.2)
    sessions = Sessions.build(health, redis_prefix())
    try:
        assert isinstance(sessions.store, RedisSessions)
        token = await sessions.open(DIGEST)
        assert not health.healthy and await sessions.resolve(token) == DIGEST
        await sessions.close(token)
        assert await sessions.resolve(token) is None
    finally:
        await sessions.stop()
        await health.close()


async def forget(prefix: str | None) -> None:
    """Delete a test's Redis keys (skips the test when the test Redis cannot be reached)."""
    client = await redis_or_skip()
    try:
        if prefix is not None:
            await drop_prefix(client, prefix)
    finally:
        await client.aclose()


def sign_in(proxy: BackgroundServer, key: str) -> httpx.Client:
    browser = httpx.Client(base_url=proxy.url)
    response = browser.post("/dashboard/login", data={"key": key})
    assert response.status_code == 303, response.text
    token = browser.cookies[COOKIE]
    assert key not in token and key.split("_")[-1] not in token and hash_key(key) not in token
    return browser


def test_a_revoked_admin_key_ends_its_sessions(tmp_path: Path, proxy_factory: ProxyFactory,
                                               upstream: BackgroundServer) -> None:
    store_url = f"sqlite:///{tmp_path}/keys.sqlite"
    store = open_key_store(store_url)
    admin_key, admin_record = new_key("ops", admin=True)
    other_key, other_record = new_key("ops2", admin=True)
    for record in (admin_record, other_record):
        asyncio.run(store.create(record))
    proxy = proxy_factory(proxy_settings(upstream.url, auth={"mode": "api_key", "store": store_url}))
    with closing(sign_in(proxy, admin_key)) as browser, closing(sign_in(proxy, other_key)) as other:
        assert browser.get("/dashboard/api/summary").status_code == 200
        asyncio.run(store.revoke(admin_record.id))
        revoked_at = time.monotonic()
        while (refused := browser.get("/dashboard/api/summary")).status_code == 200:
            assert time.monotonic() - revoked_at < 3.0, "the session outlived its key"
            time.sleep(0.05)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert browser.get("/dashboard").status_code == 401, "the sign-in page again"
        assert other.get("/dashboard/api/summary").status_code == 200, "another admin's session goes on"
    asyncio.run(store.close())


def test_a_session_is_in_the_shared_redis_when_there_is_one(proxy_factory: ProxyFactory,
                                                            upstream: BackgroundServer) -> None:
    asyncio.run(forget(None))  # skips without the test Redis
    prefix, key = redis_prefix(), "cfr-admin-" + "a7" * 16
    keys = [{"key_sha256": hash_key(key), "user": "ops", "admin": True}]
    auth = {"keys": keys, "redis_url": REDIS_URL, "redis_prefix": prefix}
    replicas = [proxy_factory(proxy_settings(upstream.url, auth=auth)) for _ in range(2)]
    try:
        with closing(sign_in(replicas[0], key)) as browser:
            token = browser.cookies[COOKIE]
            answered = httpx.get(replicas[1].url + "/dashboard/api/summary", cookies={COOKIE: token})
            assert answered.status_code == 200, "the other replica knows the session"
            assert browser.post("/dashboard/logout").status_code == 303
        ended = httpx.get(replicas[1].url + "/dashboard/api/summary", cookies={COOKIE: token})
        assert ended.status_code == 401
    finally:
        asyncio.run(forget(prefix))
