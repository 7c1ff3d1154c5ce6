"""The shutdown's time: `server.shutdown_grace_s` bounds the whole of it, from the signal to the process's exit.

uvicorn first lets the answers in flight (streams too) finish for a whole number of seconds, then cancels what is
left (router/app.py ends each such answer in its client's dialect: a 503 `ShuttingDownError` with `retry-after`,
or a stream's error event and end, never uvicorn's plain-text 500) and runs the application's shutdown, the stop:
background work (cache writes, labels) gets at most half of it and is then cancelled (what it spent is posted),
the outcome log and the spend ledger write what is queued (what they cannot write in time stays in their journals
and is written at the next start), the cache writes its snapshot, connections close and traces are exported,
every step within what is left of one deadline. The grace is split between the two: the stop gets a quarter of
it, at most STOP_BUDGET_S, less uvicorn's own steps around them; the answers get the rest, rounded down to whole
seconds (uvicorn's `timeout_graceful_shutdown` is an int). An orchestrator's kill timeout (Kubernetes'
terminationGracePeriodSeconds) of `shutdown_grace_s` is then enough.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass

logger = logging.getLogger("router.shutdown")

STOP_BUDGET_S = 5.0
"""The longest stop: draining background work and writing what is queued rarely needs more."""
SERVER_STEPS_S = 0.3
"""uvicorn's own time in a shutdown besides the answers and the stop: it notices the signal within 0.1 s, pauses
0.1 s before it waits for connections, and exits."""
MIN_STOP_S = 0.1
"""The stop's time when the grace leaves none (a grace of 0 is exceeded by this and uvicorn's steps)."""
MIN_STEP_S = 0.01
"""A step started after the deadline still gets this long (time for a close that does not wait on anything)."""


@dataclass(frozen=True)
class ShutdownPlan:
    """How a grace period is split between the answers in flight and the stop."""

    answers_s: int
    """uvicorn's `timeout_graceful_shutdown`: the answers in flight are cancelled after this."""
    stop_s: float
    """The application's shutdown (Services.stop and what follows it), from the answers' end."""

    @classmethod
    def of(cls, grace_s: float) -> ShutdownPlan:
        """The split of `server.shutdown_grace_s`."""
        answers = max(0, math.floor(grace_s - min(STOP_BUDGET_S, grace_s / 4)))
        return cls(answers, max(MIN_STOP_S, grace_s - answers - SERVER_STEPS_S))


class Deadline:
    """The end of a stop, shared by its steps (on the running event loop's clock)."""

    def __init__(self, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._at = self._loop.time() + seconds

    def left(self) -> float:
        """Seconds until the deadline (0 once it has passed)."""
        return max(0.0, self._at - self._loop.time())

    async def run(self, work: Awaitable[object], what: str, *, at_most: float | None = None,
                  cut: str = "left unfinished") -> bool:
        """Await `work` until the deadline (or for `at_most` seconds, if sooner), then cancel it and log `cut`;
        whether it finished in time."""
        timeout = self.left() if at_most is None else min(at_most, self.left())
        try:
            await asyncio.wait_for(work, max(timeout, MIN_STEP_S))
        except TimeoutError:
            logger.warning("stopping %s took over %.2fs: %s", what, timeout, cut)
            return False
        return True
