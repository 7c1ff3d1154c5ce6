"""Fixtures: the process's log captured as JSON lines, the way `cascadeflow proxy start` configures it."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from router.observability.logs import configure_logging
from router.observability.settings import LoggingSettings

LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_log() -> Iterator[LogLines]:
    """Every log record of the process (debug and up) as parsed JSON lines, while the test runs."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(LoggingSettings(format="json"), "debug", stream=buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield lines
    for handler in [each for each in root.handlers if each not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def request_line(lines: LogLines, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The request's log line (written just after its answer's last byte, so waited for)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [line for line in lines() if line.get("event") == "request" and line.get("request_id") == request_id]
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line for {request_id}")
        time.sleep(0.02)
