"""Helpers of the auth tests: requests in each dialect, a reachable Redis (or a clean skip), a relay to it that can
be cut, and proxies as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


class RedisRelay:
    """A TCP relay to the real Redis, on an event loop of its own; `cut()` stops relaying while every connection
    stays open and new ones are still accepted (a Redis that stopped answering), `restore()` relays again."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._cut = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.url = ""

    def __enter__(self) -> RedisRelay:
        self._thread.start()
        opening = asyncio.start_server(self._connection, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(opening, self._loop).result(5)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> None:
        self._cut.set()

    def restore(self) -> None:
        self._cut.clear()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:  # both ends of every connection: each pipe reads its end and returns
            writer.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        await asyncio.wait(tasks, timeout=2) if tasks else None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(self._requests(reader, upstream_writer), self._pipe(upstream_reader, writer),
                             return_exceptions=True)

    async def _requests(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        """The client's commands on their way to Redis (cut with the replies, unless a subclass says otherwise)."""
        await self._pipe(source, target)

    async def _pipe(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if not self._cut.is_set():  # cut: the bytes go nowhere, the connection stays open
                    target.write(data)
                    await target.drain()
        finally:
            target.close()


def process_config(upstream_url: str, **sections: Any) -> dict[str, Any]:
    """A proxy process's config (JSON is YAML): every provider on the scripted upstream, no models to load."""
    providers = {"anthropic": {"kind": "anthropic", "base_url": upstream_url, "api_key": "sk-proxy-anthropic"},
                 "openai": {"kind": "openai", "base_url": upstream_url + "/v1", "api_key": "sk-proxy-openai"}}
    return {"providers": providers, "embedding": {"enabled": False}, "cache": {"enabled": False},
            "outcome_log": {"enabled": False}, "learned_router": {"enabled": False}, "verifier": {"enabled": False},
            "reload": {"watch": False}, **sections}


@contextmanager
def proxy_processes(configs: list[dict[str, Any]], work: Path, ready_s: float = 90.0) -> Iterator[list[str]]:
    """`cascadeflow proxy start` once per config, each on a free port; their URLs once every one answers."""
    processes: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for index, config in enumerate(configs):
            home = work / f"proxy{index}"
            home.mkdir(parents=True, exist_ok=True)
            path, log = home / "config.yaml", home / "proxy.log"
            path.write_text(json.dumps({"data_dir": str(home), **config}))
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            command = [str(Path(sys.executable).parent / "cascadeflow"), "proxy", "start", "--config", str(path),
                       "--port", str(port)]
            with log.open("wb") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            processes.append((process, f"http://127.0.0.1:{port}", log))
        deadline = time.monotonic() + ready_s
        for process, url, log in processes:
            while not _answers(url):
                assert process.poll() is None, f"{url} exited: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"{url} not ready within {ready_s} s"
                time.sleep(0.2)
        yield [url for _, url, _ in processes]
    finally:
        for process, _, _ in processes:
            process.terminate()
        for process, _, _ in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
