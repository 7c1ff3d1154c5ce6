"""Helpers for tests of the learned router through the proxy: read the outcome log as it fills."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from router.storage import open_outcome_log
from router.storage.records import OutcomeRecord

RULES = [
    {"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
     "quality_threshold": 0.7},
    {"request_model": "gpt-4o", "draft_model": "gpt-4o-mini", "verifier_model": "gpt-4o", "quality_threshold": 0.7},
]


def records(url: str) -> list[OutcomeRecord]:
    """Every record of the log, oldest first."""
    return asyncio.run(open_outcome_log(url).query())


def wait_for(url: str, ready: Callable[[list[OutcomeRecord]], bool], timeout_s: float = 60.0) -> list[OutcomeRecord]:
    """The log's records once `ready` holds for them (they are written off the request path)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = records(url)
        if ready(found):
            return found
        if time.monotonic() > deadline:
            seen = [(r.request_id, r.route, r.label) for r in found]
            raise AssertionError(f"the outcome log never got there: {seen}")
        time.sleep(0.05)


def record_with(url: str, text: str, *, labelled: bool = False, timeout_s: float = 60.0) -> OutcomeRecord:
    """The one record whose stored prompt mentions `text` (waiting for its label if asked)."""
    def ready(found: list[OutcomeRecord]) -> bool:
        matching = [r for r in found if text in (r.prompt_text or "")]
        return len(matching) == 1 and (not labelled or matching[0].label is not None)

    return next(r for r in wait_for(url, ready, timeout_s) if text in (r.prompt_text or ""))
