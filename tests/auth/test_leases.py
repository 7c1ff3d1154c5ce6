"""Concurrency leases in the shared Redis: renewed while their requests run, lapsing when their replica stops
renewing them, and given back once Redis answers again when their release failed during an outage."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from router.auth_keys.limits import Decision, Limits, Scope
from router.auth_keys.redis_limits import RedisLimiter
from router.storage.redis_health import RedisHealth
from tests.auth.helpers import REDIS_URL, RedisRelay, drop_prefix, redis_or_skip, redis_prefix

CAPPED = [Scope("key:leased", Limits(max_concurrent=2))]


async def held_in_redis(client: Any, limiter: RedisLimiter) -> int:
    """The leases the shared Redis holds for the capped scope (read directly, not through the limiter)."""
    return int(await client.zcard(limiter.slots_key("key:leased")))


async def until(condition: Any, within_s: float) -> float:
    """Seconds until an async condition holds (fails after `within_s`)."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < within_s, f"not within {within_s} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def ticket_of(decision: Decision) -> Any:
    assert decision.allowed and decision.ticket is not None, decision.reason
    return decision.ticket


async def test_live_leases_are_renewed_and_those_of_a_silent_replica_lapse() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    alive = RedisLimiter(REDIS_URL, prefix, lease_ttl_ms=1200, renew_s=0.3)
    silent = RedisLimiter(REDIS_URL, prefix, lease_ttl_ms=1200, renew_s=3600.0)  # like a replica that died
    try:
        ticket_of(await alive.acquire(CAPPED, 1))
        ticket_of(await silent.acquire(CAPPED, 1))
        assert not (await alive.acquire(CAPPED, 1)).allowed and await held_in_redis(client, alive) == 2
        await asyncio.sleep(2.0)  # past the lease's TTL: the live one was renewed, the silent one lapsed
        assert await held_in_redis(client, alive) == 2  # nothing has swept the lapsed lease yet
        decision = await alive.acquire(CAPPED, 1)
        assert decision.allowed, "the silent replica's lease should have lapsed"
        assert not (await silent.acquire(CAPPED, 1)).allowed, "the renewed leases are still held"
        assert alive.leases_held == 2
        await alive.close()  # a replica that stops gives its leases back
        assert await held_in_redis(client, alive) == 0
    finally:
        await alive.close()
        await silent.close()
        await drop_prefix(client, prefix)
        await client.aclose()


async def test_a_release_that_failed_in_an_outage_is_given_back_when_redis_answers() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    try:
        with RedisRelay(REDIS_URL) as relay:
            limiter = RedisLimiter(relay.url, prefix, health=RedisHealth(relay.url, timeout_s=0.3))
            try:
                tickets = [ticket_of(await limiter.acquire(CAPPED, 1)) for _ in range(2)]
                assert not (await limiter.acquire(CAPPED, 1)).allowed
                relay.cut()
                for ticket in tickets:
                    ticket.release()
                await limiter.drain()
                assert not limiter.healthy and limiter.leases_held == 2
                assert await held_in_redis(client, limiter) == 2, "released during the outage: still held in Redis"
                assert (await limiter.acquire(CAPPED, 1)).allowed, "meanwhile the replica counts on its own"
                relay.restore()
                freed_s = await until(lambda: _freed(client, limiter), within_s=5.0)
                assert limiter.healthy and limiter.leases_held == 0
                both = [await limiter.acquire(CAPPED, 1) for _ in range(3)]
                assert [decision.allowed for decision in both] == [True, True, False]
                print(f"slots given back {freed_s:.2f} s after Redis answered again (lease TTL 45 s)")
            finally:
                await limiter.close()
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


async def _freed(client: Any, limiter: RedisLimiter) -> bool:
    return await held_in_redis(client, limiter) == 0


async def test_a_lease_whose_acquire_got_no_answer_is_given_back_too() -> None:
    client, prefix = await redis_or_skip(), redis_prefix()
    try:
        with RedisRelay(REDIS_URL) as relay:
            limiter = RedisLimiter(relay.url, prefix, health=RedisHealth(relay.url, timeout_s=0.3))
            try:
                ticket_of(await limiter.acquire(CAPPED, 1)).release()
                await limiter.drain()
                relay.cut()
                fallback = await limiter.acquire(CAPPED, 1)  # sent, never answered: served on local counters
                assert fallback.allowed and not limiter.healthy and limiter.leases_held == 1
                relay.restore()
                await until(lambda: _no_leases_left(limiter), within_s=5.0)
                assert await held_in_redis(client, limiter) == 0
            finally:
                await limiter.close()
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


async def _no_leases_left(limiter: RedisLimiter) -> bool:
    return limiter.leases_held == 0
