"""The dashboard's reads on both outcome-log backends: the light columns fold to the same numbers as the full
records, newest first within the cap, and prompt text is read only when asked for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from router.dashboard.aggregate import Summary, Window
from router.dashboard.reads import fold_outcomes
from router.learning_settings import OutcomeLogSettings
from router.storage import open_outcome_log
from router.storage.records import OutcomeRecord
from tests.storage.conftest import postgres_database

NOW = time.time()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/outcomes.sqlite"
    else:
        yield from postgres_database()


def records() -> list[OutcomeRecord]:
    routes = ["draft", "escalated", "strong", "cache", "pass_through", "draft"]
    return [OutcomeRecord(
        request_id=f"r{index}", created_at=NOW - 3600.0 * (len(routes) - index), tenant=f"user:{index % 2}",
        endpoint="messages", requested_model="cascade/team", route=route, reason=f"reason {index}",
        draft_model="claude-haiku-4-5", strong_model="claude-opus-4-8", cache_hit=route == "cache",
        prediction=0.5, skip_threshold=0.3, features=(1.0, 2.0), embedding=np.ones(384, np.float32).tobytes(),
        confidence=0.8 if route == "draft" else None, components={"verifier": 0.8} if route == "draft" else {},
        accepted=route == "draft" if route in ("draft", "escalated") else None, prompt_text=f"prompt {index} " * 50,
        draft_text="draft answer", strong_text="strong answer", cost_usd=0.1 * (index + 1),
        strong_only_cost_usd=1.0, label=index % 3 != 0 if route == "draft" else None)
        for index, route in enumerate(routes)]


async def write(url: str) -> None:
    """The records, written through the storage API."""
    log = open_outcome_log(OutcomeLogSettings(url=url, spool_path=None, flush_interval_ms=20))
    await log.start()
    try:
        for item in records():
            assert log.submit(item)
        await log.flush()
    finally:
        await log.stop()


def folded(items: list[OutcomeRecord]) -> Summary:
    summary = Summary(Window.last(2, NOW))
    for item in items:
        summary.add(item)
    return summary


def test_the_light_read_folds_as_the_full_records_do(url: str) -> None:
    asyncio.run(write(url))
    log = open_outcome_log(url)
    summary = Summary(Window.last(2, NOW))
    assert fold_outcomes(log, summary, summary.window.since, 1000, False) == len(records())
    assert summary.to_json() == folded(records()[::-1]).to_json(), "read newest first: the same sums in that order"
    assert summary.to_json()["totals"]["requests"] == 6


def test_the_newest_records_are_read_first_up_to_the_cap(url: str) -> None:
    asyncio.run(write(url))
    log = open_outcome_log(url)
    summary = Summary(Window.last(2, NOW), show_content=True)
    assert fold_outcomes(log, summary, summary.window.since, 2, True) == 2
    data = summary.to_json()
    assert [d["request_id"] for d in data["decisions"]] == ["r5", "r4"]
    assert data["decisions"][0]["prompt"] == ("prompt 5 " * 50)[:300]
    assert fold_outcomes(log, Summary(Window.last(2, NOW)), NOW + 10, 1000, False) == 0, "nothing that new"


def test_a_log_that_was_never_written_reads_as_empty(tmp_path: Path) -> None:
    log = open_outcome_log(f"sqlite:///{tmp_path}/none.sqlite")
    assert fold_outcomes(log, Summary(Window.last(2, NOW)), 0.0, 10, False) == 0
    assert not (tmp_path / "none.sqlite").exists()
