"""The fixed-delay fake upstream of `peers.py` (raw ASGI, one uvicorn worker; no project imports).

POST /v1/chat/completions and POST /v1/messages answer after 20 ms: a small JSON reply, or a stream of
10 content chunks 2 ms apart followed at once by the closing events ([DONE] / message_stop). GET returns a
models list for proxies that probe one. Run under the harness environment:

    uvicorn --app-dir benchmarks peers_upstream:app --port 18900 --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

DELAY_S = 0.020
CHUNKS = 10
CHUNK_GAP_S = 0.002
TEXT = "Hello from the fake upstream."

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPENAI_REPLY = json.dumps({
    "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": "fake-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "logprobs": None,
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
}).encode()

ANTHROPIC_REPLY = json.dumps({
    "id": "msg_fake", "type": "message", "role": "assistant", "model": "fake-model",
    "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 7},
}).encode()


def _openai_chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    data: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
                            "model": "fake-model", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        data["usage"] = usage
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _anthropic_event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


OPENAI_CHUNKS = [_openai_chunk({"role": "assistant", "content": "tok0 "})] + [
    _openai_chunk({"content": f"tok{i} "}) for i in range(1, CHUNKS)]
OPENAI_TAIL = _openai_chunk({}, "stop", {"prompt_tokens": 12, "completion_tokens": CHUNKS,
                                         "total_tokens": 12 + CHUNKS}) + b"data: [DONE]\n\n"

_ANTHROPIC_HEAD = _anthropic_event("message_start", {"type": "message_start", "message": {
    "id": "msg_fake", "type": "message", "role": "assistant", "model": "fake-model", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}}) + _anthropic_event(
    "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
_ANTHROPIC_DELTAS = [_anthropic_event("content_block_delta", {
    "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}})
    for i in range(CHUNKS)]
ANTHROPIC_CHUNKS = [_ANTHROPIC_HEAD + _ANTHROPIC_DELTAS[0]] + _ANTHROPIC_DELTAS[1:]
ANTHROPIC_TAIL = (
    _anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0})
    + _anthropic_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                            "stop_sequence": None},
                                         "usage": {"output_tokens": CHUNKS}})
    + _anthropic_event("message_stop", {"type": "message_stop"}))

MODELS = json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode()


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _reply(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["method"] == "GET":
        await _reply(send, 200, MODELS)
        return
    raw = await _body(receive)
    try:
        request = json.loads(raw) if raw else {}
    except ValueError:
        request = {}
    path: str = scope["path"]
    anthropic = path.endswith("/messages")
    if not (anthropic or path.endswith("/chat/completions")):
        await _reply(send, 404, b"not found", b"text/plain")
        return
    await asyncio.sleep(DELAY_S)
    if not request.get("stream"):
        await _reply(send, 200, ANTHROPIC_REPLY if anthropic else OPENAI_REPLY)
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    chunks, tail = (ANTHROPIC_CHUNKS, ANTHROPIC_TAIL) if anthropic else (OPENAI_CHUNKS, OPENAI_TAIL)
    for index, chunk in enumerate(chunks):
        if index:
            await asyncio.sleep(CHUNK_GAP_S)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": tail, "more_body": False})
