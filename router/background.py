"""Fire-and-forget work off the request path (cache writes, labels), kept so shutdown can wait for it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from router.metrics import Metrics


class BackgroundTasks:
    """Tasks whose failure is logged and counted as a dependency error, never raised to a request."""

    def __init__(self, metrics: Metrics, dependency: str, logger: logging.Logger) -> None:
        self._metrics = metrics
        self._dependency = dependency
        self._logger = logger
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._logger.warning("background %s work failed: %s", self._dependency, task.exception())
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency=self._dependency)

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until no task is left (tasks may start others), for at most `timeout_s` (None: as long as it takes);
        then cancel what is left and wait for it to unwind. Whether everything finished on its own."""
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        while self._tasks:
            remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if remaining is not None and remaining <= 0:
                break
            await asyncio.wait(list(self._tasks), timeout=remaining)
        if not self._tasks:
            return True
        left = list(self._tasks)
        self._logger.warning("cancelling %d background %s task(s) still running at shutdown", len(left),
                             self._dependency)
        for task in left:
            task.cancel("shutting down")
        await asyncio.gather(*left, return_exceptions=True)
        return False
