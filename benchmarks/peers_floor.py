"""The floor of `peers.py`: a minimal Python pass-through (Starlette + one shared aiohttp session, uvloop).

It forwards /v1/chat/completions and /v1/messages to UPSTREAM with the few headers that matter and relays the
body as it arrives: what any Python proxy costs at least on this machine. No project imports. Run:

    UPSTREAM=http://127.0.0.1:18900 uvicorn --app-dir benchmarks peers_floor:app --port 18901 --loop uvloop \
        --http httptools --no-access-log
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:18900")
FORWARDED = ("content-type", "authorization", "x-api-key", "anthropic-version", "anthropic-beta")
RETURNED = ("content-type", "cache-control")
_session: list[aiohttp.ClientSession] = []


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=512)
    async with aiohttp.ClientSession(UPSTREAM, connector=connector, auto_decompress=False,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        _session.append(session)
        yield
        _session.clear()


async def forward(request: Request) -> StreamingResponse:
    headers = {key: value for key, value in request.headers.items() if key in FORWARDED}
    response = await _session[0].post(request.url.path, data=await request.body(), headers=headers)
    returned = {key: value for key, value in response.headers.items() if key.lower() in RETURNED}
    return StreamingResponse(response.content.iter_any(), status_code=response.status, headers=returned,
                             background=BackgroundTask(response.release))


app = Starlette(routes=[Route("/v1/chat/completions", forward, methods=["POST"]),
                        Route("/v1/messages", forward, methods=["POST"])], lifespan=lifespan)
