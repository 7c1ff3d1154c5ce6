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

    async def drain(self) -> None:
        """Wait until no task is left (tasks may start others)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
