"""Micro-batching of blocking model calls: the calls of one moment run as one batch on a worker thread.

A batch starts at once when the worker is idle (no added latency for a lone request); while one runs, new
calls queue and go together in the next. So batches grow exactly when load does. An optional window holds the
first call of a batch a little longer for company. One batcher per event loop (the model may be shared by
several loops, e.g. in tests); the model itself runs on the given executor.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _LoopBatcher(Generic[Item, Result]):
    """The queue and the running batch of one event loop."""

    def __init__(self, owner: MicroBatcher[Item, Result], loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._loop = loop
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running = False
        self._scheduled = False

    def submit(self, item: Item) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = self._loop.create_future()
        self._pending.append((item, future))
        if not self._running and not self._scheduled:
            self._scheduled = True  # the other calls of this loop iteration join the same batch
            if self._owner.window_s > 0:
                self._loop.call_later(self._owner.window_s, self._start)
            else:
                self._loop.call_soon(self._start)
        return future

    def _start(self) -> None:
        self._scheduled = False
        if self._running or not self._pending:
            return
        batch = self._pending[: self._owner.max_batch]
        self._pending = self._pending[self._owner.max_batch:]
        self._running = True
        self._loop.create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._loop.run_in_executor(self._owner.executor, self._owner.run_batch,
                                                       [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:  # every waiting caller gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for result, (_, future) in zip(results, batch, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._running = False
            if self._pending:
                self._start()


class MicroBatcher(Generic[Item, Result]):
    """`await batcher.submit(item)`: the item's result from `run_batch(items)`, run with the calls around it."""

    def __init__(self, run_batch: Callable[[list[Item]], Sequence[Result]], executor: Executor, *,
                 max_batch: int = 32, window_s: float = 0.0) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max(1, max_batch)
        self.window_s = max(0.0, window_s)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBatcher[Item, Result]] = \
            weakref.WeakKeyDictionary()

    async def submit(self, item: Item) -> Result:
        """The result for one item (its exception, if the batch failed)."""
        loop = asyncio.get_running_loop()
        batcher = self._loops.get(loop)
        if batcher is None:
            batcher = self._loops[loop] = _LoopBatcher(self, loop)
        return await batcher.submit(item)

    def forget_loop(self) -> None:
        """Drop the running loop's queue (at shutdown)."""
        self._loops.pop(asyncio.get_running_loop(), None)
