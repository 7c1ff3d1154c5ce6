"""The same tests on both backends: records round-trip, labels land, flush means durable, nothing blocks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
import time
from pathlib import Path

import numpy as np

from router.storage import open_outcome_log
from router.storage.records import LabelUpdate, OutcomeRecord
from router.storage.spool import Item, Spool
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
    log = open_outcome_log(settings_for(log_url, tmp_path, queue_size=3, journal=False))
    # not started: nothing drains the queue, as when the writer is stuck
    started = time.perf_counter()
    accepted = [log.submit(bare_record(f"r{index}")) for index in range(10)]
    assert time.perf_counter() - started < 0.5
    assert accepted == [True] * 3 + [False] * 7
    assert log.status()["dropped"] == 7 and log.status()["queued"] == 3
    await log.start()
    await log.stop()  # stop() writes what was queued
    assert [r.request_id for r in await log.query()] == ["r0", "r1", "r2"]


async def test_a_full_queue_leaves_records_in_the_journal_for_the_next_start(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path, queue_size=3))
    accepted = [log.submit(bare_record(f"r{index}")) for index in range(10)]  # not started: nothing drains it
    assert accepted == [True] * 10
    assert log.status()["deferred"] == 7 and log.status()["dropped"] == 0
    await log.start()
    await log.stop()  # writes what was queued; the rest stays in the journal
    assert [r.request_id for r in await log.query()] == ["r0", "r1", "r2"]
    again = open_outcome_log(settings_for(log_url, tmp_path))
    await again.start()  # the next start writes what the journal kept
    await again.stop()
    assert sorted(r.request_id for r in await log.query()) == sorted(f"r{index}" for index in range(10))
    assert again.status()["recovered"] == 10  # all handed over again: the three already stored are kept once


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


async def test_retention_runs_when_the_log_starts(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path))
    await log.start()
    for index in range(4):
        log.submit(bare_record(f"r{index}"))
    await log.stop()
    smaller = open_outcome_log(settings_for(log_url, tmp_path, max_rows=2))
    await smaller.start()
    try:
        await smaller.flush()
        assert [r.request_id for r in await smaller.query()] == ["r2", "r3"]
    finally:
        await smaller.stop()


async def test_awkward_values_come_back_the_same_from_both_stores(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path))
    await log.start()
    try:
        awkward = dataclasses.replace(
            full_record("r1"), prompt_text="a\x00b\ud800c", prediction=np.float32(0.5),  # type: ignore[arg-type]
            cache_hit=np.bool_(True), input_tokens=np.int64(7), confidence=float("nan"),  # type: ignore[arg-type]
            features=(np.float32(0.25), float("inf"), float("nan")),  # type: ignore[arg-type]
            components={"b": 1.0, "a": float("-inf")})
        assert log.submit(awkward)
        await log.flush()
        [stored] = await log.query()
        assert stored.prompt_text == "a\ufffdb\ufffdc"  # NUL and lone surrogates: refused by PostgreSQL
        assert (type(stored.prediction), type(stored.cache_hit), type(stored.input_tokens)) == (float, bool, int)
        assert stored.confidence is None  # NaN: SQLite cannot hold it, so neither store does
        assert stored.features is not None and stored.features[:2] == (0.25, math.inf)
        assert math.isnan(stored.features[2])
        assert list(stored.components.items()) == [("a", -math.inf), ("b", 1.0)]  # sorted by name on both
        assert log.status()["healthy"] is True
    finally:
        await log.stop()


async def test_a_refused_record_is_set_aside_and_the_rest_written(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path))
    await log.start()
    try:
        log.submit(bare_record("good1"))
        log.submit(dataclasses.replace(bare_record("bad1"), input_tokens="many"))  # type: ignore[arg-type]
        log.submit(dataclasses.replace(bare_record("bad2"), input_tokens=2**70))  # out of range of both stores
        log.submit(bare_record("good2"))
        log.submit_label("good2", True, "grader")
        await log.flush()
        assert [(r.request_id, r.label) for r in await log.query()] == [("good1", None), ("good2", True)]
        status = log.status()
        assert status["healthy"] is True and status["rejected"] == 2 and status["written"] == 2
        rejected = [json.loads(line) for line in (tmp_path / "spool.jsonl.rejected").read_text().splitlines()]
        assert [entry["request_id"] for entry in rejected] == ["bad1", "bad2"]
        assert not (tmp_path / "spool.jsonl").exists()  # nothing waits for replay: the store is fine
    finally:
        await log.stop()


async def test_submissions_after_stop_are_dropped(log_url: str, tmp_path: Path) -> None:
    log = open_outcome_log(settings_for(log_url, tmp_path))
    await log.start()
    await log.stop()
    assert log.submit(bare_record("late")) is False
    assert log.submit_label("late", True, "grader") is False
    assert log.status()["dropped"] == 2


async def test_a_torn_spool_line_does_not_swallow_the_next_record(log_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    Spool(spool).write_items([bare_record("before")])
    with spool.open("a") as handle:
        handle.write('{"kind": "record", "rec')  # a crash mid-append
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    down = open_outcome_log(settings_for(f"sqlite:///{blocker}/outcomes.sqlite", tmp_path))
    await down.start()
    down.submit(bare_record("after"))
    await down.stop()
    back = open_outcome_log(settings_for(log_url, tmp_path))
    await back.start()
    try:
        assert [r.request_id for r in await back.query()] == ["before", "after"]
        assert not spool.exists()
    finally:
        await back.stop()


def test_appends_racing_a_replay_are_neither_lost_nor_repeated(tmp_path: Path) -> None:
    spool, seen = Spool(tmp_path / "spool.jsonl"), list[str]()
    labels = [LabelUpdate(f"r{index}", True, "grader") for index in range(600)]

    def take(items: list[Item]) -> list[Item]:
        seen.extend(item.request_id for item in items)
        return []

    def appender() -> None:
        for start in range(0, len(labels), 3):
            spool.write_items(labels[start:start + 3])

    thread = threading.Thread(target=appender)
    thread.start()
    while thread.is_alive():
        spool.replay(take)  # another worker replaying the shared spool meanwhile
    thread.join()
    spool.replay(take)
    assert seen == [label.request_id for label in labels]
