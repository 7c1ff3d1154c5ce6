"""A stalling upstream, and a proxy process in front of it: Anthropic streams that start and then wait for a
minute (some models answer at once), for the tests of abandoned work and of shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from benchmarks.kill_durability import free_port, start_proxy, wait_ready
from router.replay.runner import BackgroundServer

DRAFT, STRONG = "claude-haiku-4-5", "claude-opus-4-8"
ASK = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
"""An Anthropic client's headers (the proxy has no keys: any key is let through)."""


@dataclass
class Stalls:
    """What the stalling upstream saw: calls per model, and streams it saw cancelled (their client went away)."""

    models: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


FINISH: list[dict[str, Any]] = [
    {"type": "content_block_delta", "index": 0,
     "delta": {"type": "text_delta", "text": "The capital of France is Paris."}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 9}},
    {"type": "message_stop"}]


def stalling_upstream(stalls: Stalls, answered: frozenset[str] = frozenset()) -> Starlette:
    """Anthropic streams that start (100 input tokens, 1 output token) and then wait for a minute; the models in
    `answered` finish theirs at once."""

    async def messages(request: Request) -> Response:
        model = (await request.json())["model"]
        with stalls.lock:
            stalls.models.append(model)

        async def events() -> AsyncIterator[bytes]:
            try:
                yield _event("message_start", {"type": "message_start", "message": {
                    "id": "msg_stall", "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 100, "output_tokens": 1}}})
                yield _event("content_block_start", {"type": "content_block_start", "index": 0,
                                                     "content_block": {"type": "text", "text": ""}})
                if model in answered:
                    for event in FINISH:
                        yield _event(event["type"], event)
                    return
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                with stalls.lock:
                    stalls.cancelled.append(model)
                raise

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


def wait_for(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Poll until `condition()` holds (fails the test after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@dataclass
class StalledProxy:
    """A `cascadeflow proxy start` process in front of the stalling upstream."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    stalls: Stalls

    def explore_a_draft(self) -> None:
        """A request the draft answers at once (route `draft`), whose exploration of the strong model (background
        work nobody waits for) then stalls."""
        reply = httpx.post(self.url + "/v1/messages", timeout=30, headers=ASK, json={
            "model": STRONG, "max_tokens": 64, "messages": [{"role": "user", "content": "The capital of Peru?"}]})
        assert reply.status_code == 200 and reply.headers["x-cascadeflow-route"] == "draft", reply.text
        wait_for(lambda: STRONG in self.stalls.models)

    def terminate(self) -> tuple[int, float]:
        """SIGTERM, as an orchestrator stops it: the exit code and the seconds until the process ended."""
        self.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = self.process.wait(timeout=30)
        return code, time.monotonic() - started


@contextmanager
def stalled_proxy(tmp_path: Path, *, grace_s: float, answered: frozenset[str] = frozenset({DRAFT})
                  ) -> Iterator[StalledProxy]:
    """A ready proxy (outcome log in SQLite, every draft explored, a cascade rule from STRONG to DRAFT that accepts
    any draft) before the stalling upstream; killed if a test leaves it running."""
    stalls = Stalls()
    with BackgroundServer(stalling_upstream(stalls, answered)) as server:
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"data_dir: \"{tmp_path}\"\n"
            f"server: {{host: 127.0.0.1, port: {port}, shutdown_grace_s: {grace_s}}}\n"
            f"providers:\n  anthropic: {{base_url: \"{server.url}\", api_key: sk-proxy}}\n"
            "embedding: {enabled: false}\nlearned_router: {enabled: false}\nverifier: {enabled: false}\n"
            f"outcome_log: {{enabled: true, url: \"sqlite:///{tmp_path}/o.sqlite\"}}\n"
            "labels: {exploration_rate: 1.0}\nreload: {watch: false}\n"
            f"cascade_rules: [{{request_model: {STRONG}, draft_model: {DRAFT}, verifier_model: {STRONG}, "
            "quality_threshold: 0.0}]\n")
        log = tmp_path / "proxy.log"
        proxy = StalledProxy(f"http://127.0.0.1:{port}", start_proxy(config, log), log, stalls)
        try:
            wait_ready(proxy.url, proxy.process)
            yield proxy
        finally:
            if proxy.process.poll() is None:
                proxy.process.kill()
                proxy.process.wait()
