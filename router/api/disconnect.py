"""Work follows the client: a request whose client hangs up before its answer begins is cancelled.

uvicorn does not cancel a request's task when its client goes away; it only answers `receive()` with
`http.disconnect`. Once the body is read nothing else arrives on `receive()`, so one small task waits on it while
the pipeline runs and cancels the request's task if the client leaves. That task starts WATCH_AFTER_S into the
request: most answers are back before it (no task made, nothing to cancel), and a client that left earlier is seen
at once then (uvicorn remembers the disconnect), so abandoned work runs at most that much longer. The pipeline then
records what was spent so far (router/pipeline/flow.py) and the cancellation reaches every upstream call made for
the request (the draft, its samples, the strong call), which closes their connections. Once a stream has begun,
Starlette's own watch on `receive()` takes over (the stream's end is recorded by router/providers/call.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive

from router.errors import ClientDisconnectedError

CLIENT_GONE = "the client disconnected"
"""The cancellation message of a request whose client hung up (the pipeline's record quotes it)."""
T = TypeVar("T")
WATCH_AFTER_S = 0.05
"""When the watch on `receive()` starts (a task and a wait per request cost about a tenth of the pass-through's CPU)."""


async def _watch(receive: Receive, task: asyncio.Task[Any], gone: list[bool]) -> None:
    while (await receive())["type"] != "http.disconnect":
        continue
    gone.append(True)
    task.cancel(CLIENT_GONE)


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """The result of `work` (awaited in this task, after the request's body was read); when the client hangs up
    first, `work` is cancelled and ClientDisconnectedError raised (an answer nobody will read)."""
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - always inside a task under uvicorn
        return await work
    gone: list[bool] = []
    watchers: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    timer = loop.call_later(WATCH_AFTER_S, lambda: watchers.append(loop.create_task(
        _watch(request.receive, task, gone))))
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise  # not ours (the server's shutdown): let it through
        task.uncancel()
        raise ClientDisconnectedError(CLIENT_GONE) from None
    finally:
        timer.cancel()
        for watcher in watchers:
            watcher.cancel()
