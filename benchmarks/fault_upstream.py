"""A local upstream that fails on purpose, for `faults.py`.

It answers like the Anthropic and OpenAI APIs (`/v1/messages`, `/v1/chat/completions`, `/v1/responses`; JSON and
SSE, rendered by `router.replay`) from a small HTTP/1.1 server on asyncio streams, so that a fault can be what a
provider's bad day really is, down to the socket:

- `drop_before`: the connection is reset before any byte of the answer;
- `drop_mid`: the headers and part of the body (or of the stream, up to the middle of an event) are sent,
  then the connection is reset;
- `stall_before` / `stall_mid`: silence longer than the proxy's timeouts, before the answer or in the middle of it;
- `status_529`: an overloaded error in the call's dialect, and 529 storms: every call for `storm_length_s` at the
  end of each `storm_every_s` window;
- `malformed`: a JSON body cut in half, or an SSE event whose data is not JSON in the middle of a stream.

Every other call gets a normal answer after `latency_s`, streamed with `chunk_gap_s` between events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.replay.answers import Answer, Dialect
from router.replay.render import error_body
from router.replay.server import render_body, render_events

FAULTS = ("ok", "status_529", "drop_before", "drop_mid", "stall_before", "stall_mid", "malformed")
DIALECTS: Mapping[str, Dialect] = {"/v1/messages": "anthropic", "/v1/chat/completions": "openai_chat",
                                   "/v1/responses": "openai_responses"}
TEXT = "The fault upstream answers in a few words so that a stream has several events to break in between."
GARBAGE_EVENT = b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"text": \n\n'
REASONS = {200: "OK", 404: "Not Found", 529: "Overloaded"}


@dataclass(frozen=True)
class FaultPlan:
    """How often each fault strikes (outside storms), and how long the stalls and storms last."""

    weights: Mapping[str, float] = field(default_factory=lambda: {
        "ok": 0.62, "status_529": 0.08, "drop_before": 0.06, "drop_mid": 0.06, "stall_before": 0.04,
        "stall_mid": 0.04, "malformed": 0.10})
    storm_every_s: float = 10.0
    storm_length_s: float = 2.0
    stall_s: float = 4.0
    latency_s: float = 0.02
    chunk_gap_s: float = 0.004
    seed: int = 7


@dataclass(frozen=True)
class Request:
    """One HTTP request as read from the socket."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a connection, None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    return Request(method, target.split("?", 1)[0], headers, body)


def response_head(status: int, headers: Mapping[str, str]) -> bytes:
    """A status line and headers."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_response(status: int, body: bytes) -> bytes:
    """A whole JSON response."""
    return response_head(status, {"content-type": "application/json", "content-length": str(len(body))}) + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class FaultUpstream:
    """The server; `counts` says how many calls got each fault (`storm_529` for those of a storm)."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.plan = plan or FaultPlan()
        self.counts: Counter[str] = Counter()
        self._random = random.Random(self.plan.seed)
        self._started = time.monotonic()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> str:
        """Listen on a free loopback port; the base URL."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for handler in list(self._handlers):  # stalled answers sleep on: end them now
                handler.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    def fault(self) -> str:
        """The fault of the next call: a storm's 529, else one drawn by weight."""
        plan = self.plan
        if (time.monotonic() - self._started) % plan.storm_every_s >= plan.storm_every_s - plan.storm_length_s:
            return "storm_529"
        names = list(plan.weights)
        return self._random.choices(names, weights=[plan.weights[name] for name in names])[0]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        self._writers.add(writer)
        try:
            while (request := await read_request(reader)) is not None and await self._answer(request, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the proxy gave up on the call (a timeout) or on the connection
        except asyncio.CancelledError:
            pass  # stopped: the connection just ends (asyncio's stream callback would report a cancelled handler)
        finally:
            if handler is not None:
                self._handlers.discard(handler)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one call (or fail it); whether the connection may serve another."""
        dialect = DIALECTS.get(request.path)
        if request.method != "POST" or dialect is None:
            writer.write(json_response(404, b'{"type": "error", "error": {"type": "not_found_error", '
                                            b'"message": "Not found."}}'))
            await writer.drain()
            return True
        body: dict[str, Any] = json.loads(request.body)
        fault = self.fault()
        self.counts[fault] += 1
        await asyncio.sleep(self.plan.latency_s)
        if fault == "drop_before":
            writer.transport.abort()
            return False
        if fault == "stall_before":
            await asyncio.sleep(self.plan.stall_s)  # the proxy has given up by now; the answer may still go out
        if fault in ("status_529", "storm_529"):
            error = error_body(dialect, 529, request_id="req_fault")
            writer.write(json_response(529, json.dumps(error).encode()))
            await writer.drain()
            return True
        answer = Answer(text=TEXT, input_tokens=40, output_tokens=20)
        model = str(body.get("model", ""))
        if body.get("stream") is True:
            return await self._stream(writer, [event.encode() for event in render_events(dialect, answer, model, body)],
                                      fault)
        return await self._json(writer, json.dumps(render_body(dialect, answer, model, body)).encode(), fault)

    async def _json(self, writer: asyncio.StreamWriter, payload: bytes, fault: str) -> bool:
        half = len(payload) // 2
        if fault == "malformed":
            writer.write(json_response(200, payload[:half]))  # a whole response whose JSON is cut in half
            await writer.drain()
            return True
        head = response_head(200, {"content-type": "application/json", "content-length": str(len(payload))})
        if fault in ("drop_mid", "stall_mid"):
            writer.write(head + payload[:half])
            await writer.drain()
            if fault == "drop_mid":
                writer.transport.abort()
                return False
            await asyncio.sleep(self.plan.stall_s)
            writer.write(payload[half:])
        else:
            writer.write(head + payload)
        await writer.drain()
        return True

    async def _stream(self, writer: asyncio.StreamWriter, events: list[bytes], fault: str) -> bool:
        writer.write(response_head(200, {"content-type": "text/event-stream", "cache-control": "no-cache",
                                         "transfer-encoding": "chunked"}))
        middle = len(events) // 2
        for number, event in enumerate(events):
            if number == middle and fault == "drop_mid":  # cut inside an event, as a network drop does
                writer.write(chunk(event[: len(event) // 2]))
                await writer.drain()
                writer.transport.abort()
                return False
            if number == middle and fault == "stall_mid":
                await writer.drain()
                await asyncio.sleep(self.plan.stall_s)
            if number == middle and fault == "malformed":
                writer.write(chunk(GARBAGE_EVENT))
            writer.write(chunk(event))
            await writer.drain()
            await asyncio.sleep(self.plan.chunk_gap_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True
