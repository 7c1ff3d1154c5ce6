"""The same tests on both backends: records round-trip, labels land, flush means durable, nothing blocks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from router.storage import open_outcome_log
from router.storage.records import OutcomeRecord
from tests.storage.conftest import settings_for


def full_record(request_id: str, created_at: float | None = None) -> OutcomeRecord:
    return OutcomeRecord(
        request_id=request_id, created_at=created_at if created_at is not None else time.time(), tenant="user:ann",
        endpoint="messages", requested_model="claude-sonnet-4-5", route="escalated", reason="confidence 0.41 < 0.7",
        draft_model="claude-haiku-4-5", strong_model="claude-sonnet-4-5", cache_hit=False, prediction=0.625,
        skip_threshold=0.3, artifact_version="20261129-0400", features_version="1", features=(1.5, 0.0, 3.25),
        embedding=np.arange(4, dtype=np.float32).tobytes(), confidence=0.41,
        components={"hedging": 0.2, "predicted": 0.625}, accepted=False, prompt_sha256="ab" * 32,
        prompt_text="What is 2+2?", draft_text="Maybe 5", strong_text="4", input_tokens=12, output_tokens=3,
        draft_input_tokens=12, draft_output_tokens=4, cost_usd=0.00021, strong_only_cost_usd=0.0002,
        latency_ms=812.5, draft_latency_ms=300.25, strong_latency_ms=512.25)


def bare_record(request_id: str, created_at: float | None = None) -> OutcomeRecord:
    return OutcomeRecord(request_id=request_id, created_at=created_at if created_at is not None else time.time(),
                         tenant="t", endpoint="chat", requested_model="gpt-4o", route="pass_through")


async def test_every_field_round_trips(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path))
    await log.start()
    try:
        records = [full_record("r1"), bare_record("r2")]
        assert all(log.submit(record) for record in records)
        await log.flush()
        assert await log.query() == records
        assert log.status()["healthy"] is True and log.status()["written"] == 2
    finally:
        await log.stop()


async def test_labels_land_before_and_after_the_record_is_written(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path))
    await log.start()
    try:
        log.submit(bare_record("queued"))
        log.submit_label("queued", True, "agreement:exact", "same text")
        log.submit(bare_record("written"))
        await log.flush()
        log.submit_label("written", False, "agreement:similarity", "cosine 0.2")
        await log.flush()
        labelled = await log.query(labelled_only=True)
        assert [(r.request_id, r.label, r.label_source, r.label_detail) for r in labelled] == [
            ("queued", True, "agreement:exact", "same text"), ("written", False, "agreement:similarity", "cosine 0.2")]
    finally:
        await log.stop()


async def test_query_filters_and_order(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path))
    await log.start()
    try:
        base = time.time() - 100.0
        for index in range(5):
            log.submit(bare_record(f"r{index}", created_at=base + index))
        log.submit_label("r3", True, "dataset")
        await log.flush()
        assert [r.request_id for r in await log.query()] == ["r0", "r1", "r2", "r3", "r4"]
        assert [r.request_id for r in await log.query(since=base + 2, limit=2)] == ["r2", "r3"]
        assert [r.request_id for r in await log.query(labelled_only=True)] == ["r3"]
        assert await log.count() == 5
    finally:
        await log.stop()


async def test_retention_by_rows_and_by_age(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path, max_rows=3, retention_days=1.0))
    await log.start()
    try:
        log.submit(bare_record("ancient", created_at=time.time() - 3 * 86400))
        for index in range(4):
            log.submit(bare_record(f"new{index}"))
        await log.flush()
        await log.prune()
        assert [r.request_id for r in await log.query()] == ["new1", "new2", "new3"]
    finally:
        await log.stop()


async def test_submit_never_blocks_and_counts_what_it_drops(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path, queue_size=3))
    # not started: nothing drains the queue, as when the writer is stuck
    started = time.perf_counter()
    accepted = [log.submit(bare_record(f"r{index}")) for index in range(10)]
    assert time.perf_counter() - started < 0.5
    assert accepted == [True] * 3 + [False] * 7
    assert log.status()["dropped"] == 7 and log.status()["queued"] == 3
    await log.start()
    await log.stop()  # stop() writes what was queued
    assert [r.request_id for r in await log.query()] == ["r0", "r1", "r2"]


async def test_writes_happen_off_the_event_loop(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path, batch_size=50))
    await log.start()
    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        for index in range(2000):
            log.submit(bare_record(f"r{index}"))
        await log.flush()
        task.cancel()
        assert ticks > 10  # the loop kept running while 2,000 records were written
        assert await log.count() == 2000
    finally:
        await log.stop()
