"""A streamed request kept alive while its answer is not yet known.

On a cascade rule a streamed answer cannot begin until the draft is made and judged: with a slow draft model
(a local one on a CPU, a long prompt) nothing reaches the client for minutes, and clients with an idle timeout
give up (Claude Code's is 300 s) after the work was paid for. When the answer has not begun after
`server.stream_keepalive_s`, the response begins anyway: 200 with event-stream headers, then an SSE comment
(`: keepalive`, which every SSE parser skips) every `stream_keepalive_s` until the answer is ready; its frames
follow. A failure from then on (an upstream error, a rate limit, an internal error) can no longer change the status,
so it ends the stream with an error event in the client's dialect, as a provider does for an error mid-stream.
The work stays tied to the client: when it hangs up, the request's task is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import orjson
from fastapi.responses import Response, StreamingResponse

from router.errors import ProxyError, UpstreamStatusError, kind_for_status
from router.protocol.streams import closing_error
from router.types import Answer, Dialect, JSONAnswer, StreamAnswer

logger = logging.getLogger("router.api")

KEEPALIVE = b": keepalive\n\n"
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
               "x-cascadeflow-keepalive": "true"}


async def answer_or_keepalive(work: Coroutine[Any, Any, Answer], dialect: Dialect, every_s: float,
                              render: Callable[[Answer], Response]) -> Response:
    """`render(answer)` when `work` answers (or raises) within `every_s`; else an event stream that keeps the
    connection alive until it does, then carries the answer."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=every_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return render(task.result())
    task.add_done_callback(_retrieve)
    return StreamingResponse(_late_frames(task, dialect, every_s), status_code=200, headers=dict(SSE_HEADERS))


def _retrieve(task: asyncio.Task[Answer]) -> None:
    """Mark a late answer's failure as seen (the stream reports it, or nobody is left to see it)."""
    if not task.cancelled():
        task.exception()


async def _late_frames(task: asyncio.Task[Answer], dialect: Dialect, every_s: float) -> AsyncIterator[bytes]:
    """Keep-alive comments until the answer is ready, then its frames, or a closing error event."""
    try:
        yield KEEPALIVE
        while not task.done():
            await asyncio.wait({task}, timeout=every_s)
            if not task.done():
                yield KEEPALIVE
        try:
            answer = task.result()
        except UpstreamStatusError as error:  # the provider's own error, as its status and body say
            _, message = _error_in(error.body, error.upstream_status)
            yield closing_error(dialect, kind_for_status(error.upstream_status), message)
            return
        except ProxyError as error:
            yield closing_error(dialect, error.kind, error.message)
            return
        except Exception:
            logger.exception("a late streamed answer failed")
            yield closing_error(dialect, "api_error", "internal error in the proxy")
            return
        if isinstance(answer, StreamAnswer) and answer.status < 400:
            try:
                async for frame in answer.frames:
                    yield frame
            finally:  # a client gone mid-stream closes the relay's upstream stream at once
                close = getattr(answer.frames, "aclose", None)
                if close is not None:
                    await close()
            return
        body = answer.body if isinstance(answer, JSONAnswer) else b""
        yield closing_error(dialect, *_error_in(body, answer.status))
    finally:
        if not task.done():  # the client left while the answer was being made: work follows the client
            task.cancel()


def _error_in(body: bytes, status: int) -> tuple[str, str]:
    """The kind and message of an error body in either dialect (`{"error": {"type", "message"}}`), else of its
    status."""
    try:
        error = orjson.loads(body).get("error") if body else None
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if isinstance(error, dict):
        return str(error.get("type") or kind_for_status(status)), str(error.get("message") or f"HTTP {status}")
    return kind_for_status(status), f"the answer failed with HTTP {status}"
