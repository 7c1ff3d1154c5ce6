"""Helpers of the budget and spend tests: prices that make a short request cost a few cents, and a relay to Redis
that loses only its replies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tests.auth.helpers import RedisRelay

USD_PER_TOKEN = 0.001
PRICES = {model: {"prices": {"input": USD_PER_TOKEN * 1e6, "output": USD_PER_TOKEN * 1e6}}
          for model in ("claude-haiku-4-5", "gpt-4o-mini", "claude-opus-4-8")}
"""One token costs a tenth of a cent on both models: a short request costs a few cents."""


async def until(condition: Callable[[], Awaitable[bool]], within_s: float) -> float:
    """Seconds until an async condition holds (fails after `within_s`)."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < within_s, f"not within {within_s} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


class ReplyLosingRelay(RedisRelay):
    """A relay to Redis whose `cut()` drops only Redis's replies: commands still reach Redis and run, and their answers
    never come back (a link that broke after the request went out)."""

    async def _requests(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                target.write(data)
                await target.drain()
        finally:
            target.close()
