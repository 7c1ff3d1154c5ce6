"""Helpers of the auth tests: requests in each dialect, and a reachable Redis (or a clean skip)."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import httpx
import pytest

REDIS_URL = os.environ.get("CASCADEFLOW_TEST_REDIS", "redis://127.0.0.1:6379/0")


def ask_anthropic(url: str, key: str, text: str, **extra: Any) -> httpx.Response:
    """POST /v1/messages with a key."""
    body = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{url}/v1/messages", json=body, timeout=30,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01"})


def ask_openai(url: str, key: str, text: str, **extra: Any) -> httpx.Response:
    """POST /v1/chat/completions with a key."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30, headers={"authorization": f"Bearer {key}"})


def redis_prefix() -> str:
    """A key prefix of its own for one test."""
    return f"cascadeflow-test:{uuid.uuid4().hex[:10]}"


async def redis_or_skip() -> Any:
    """A client of the test Redis; skips (or fails with CASCADEFLOW_REQUIRE_REDIS=1) when it cannot be reached."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        await asyncio.wait_for(client.ping(), 2.0)
    except Exception as exc:  # any failure to reach it means there is no Redis here
        await client.aclose()
        message = f"Redis not reachable at {REDIS_URL}: {exc}"
        if os.environ.get("CASCADEFLOW_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return client


async def drop_prefix(client: Any, prefix: str) -> None:
    """Delete every Redis key under a test's prefix."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
