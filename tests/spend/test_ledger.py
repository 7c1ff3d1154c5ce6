"""The spend ledger: rows summed per day, user and key on both backends, the scope totals budgets start from, and
no row lost when the database is down or the proxy stops."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from router.budgets.core import Periods
from router.metrics import Metrics
from router.spend.ledger import SpendLedger
from router.spend.records import SpendRecord, UsageQuery
from router.spend.settings import SpendSettings
from router.spend.stores import open_spend_store

DAY1, DAY2 = date(2025, 3, 13), date(2025, 3, 14)


def row(request_id: str, day: date, user: str | None, key_id: str | None, actual: float,
        strong_only: float | None, **changes: object) -> SpendRecord:
    record = SpendRecord(
        request_id=request_id, created_at=0.0, day=day.isoformat(), tenant=f"user:{user}" if user else "key:abc",
        user_name=user, key_id=key_id, tier="pro" if user else None, endpoint="messages", model="claude-haiku-4-5",
        route="draft", status=200, actual_usd=actual, strong_only_usd=strong_only, wasted_usd=0.0, input_tokens=10,
        output_tokens=5, cache_read_tokens=2, cache_write_tokens=1)
    return replace(record, **changes)  # type: ignore[arg-type]


ROWS = [row("r1", DAY1, "alice", "k1", 0.10, 1.00), row("r2", DAY1, "alice", "k2", 0.20, 2.00),
        row("r3", DAY1, "bob", "k3", 0.05, None, route="failed", status=502, wasted_usd=0.05),
        row("r4", DAY2, "alice", "k1", 0.40, 0.40), row("r5", DAY2, None, None, 1.00, 3.00)]


def ledger_for(url: str, tmp_path: Path, **changes: object) -> SpendLedger:
    settings = SpendSettings(url=url, spool_path=str(tmp_path / "spend.spool.jsonl"), flush_interval_ms=20,
                             **changes)  # type: ignore[arg-type]
    return SpendLedger(open_spend_store(url), settings, Metrics())


async def test_rows_are_summed_per_day_user_and_key(spend_url: str, tmp_path: Path) -> None:
    ledger = ledger_for(spend_url, tmp_path)
    await ledger.start()
    try:
        for record in ROWS + ROWS[:2]:  # a row posted twice (a replayed spool) is kept once
            ledger.post_record(record)
        by_day = await ledger.usage(UsageQuery(DAY1, DAY2, group_by="day"))
        assert [(r.day, r.requests) for r in by_day] == [("2025-03-13", 3), ("2025-03-14", 2)]
        assert by_day[0].actual_usd == pytest.approx(0.35)
        assert by_day[0].strong_only_usd == pytest.approx(3.05)  # the failure's unknown strong-only: its actual
        assert by_day[0].saved_usd == pytest.approx(2.70) and by_day[0].wasted_usd == pytest.approx(0.05)
        assert (by_day[1].input_tokens, by_day[1].cache_read_tokens, by_day[1].cache_write_tokens) == (20, 4, 2)
        by_user = await ledger.usage(UsageQuery(DAY1, DAY2, group_by="user"))
        assert [(r.day, r.user, r.requests) for r in by_user] == [
            ("2025-03-13", "alice", 2), ("2025-03-13", "bob", 1), ("2025-03-14", None, 1), ("2025-03-14", "alice", 1)]
        assert by_user[2].tenant == "key:abc"
        alice = await ledger.usage(UsageQuery(DAY1, DAY2, tenant="user:alice", group_by="key"))
        assert [(r.day, r.key_id, r.actual_usd) for r in alice] == [
            ("2025-03-13", "k1", pytest.approx(0.10)), ("2025-03-13", "k2", pytest.approx(0.20)),
            ("2025-03-14", "k1", pytest.approx(0.40))]
        assert await ledger.usage(UsageQuery(DAY2, DAY2, user="bob")) == []
        assert ledger.status()["written"] == 7 and ledger.healthy
    finally:
        await ledger.stop()


async def test_scope_totals_start_the_budgets_of_this_day_and_month(spend_url: str, tmp_path: Path) -> None:
    ledger = ledger_for(spend_url, tmp_path)
    await ledger.start()
    try:
        for record in ROWS + [row("r0", date(2025, 2, 28), "alice", "k1", 9.0, 9.0)]:
            ledger.post_record(record)
        await ledger.flush()
        noon = Periods.at(1741953600.0)  # 2025-03-14 12:00 UTC
        totals = {(total.scope, total.period): total.usd for total in await ledger.history(noon)}
        assert totals == {("key:k1", "m:2025-03"): pytest.approx(0.5), ("key:k1", "d:2025-03-14"): pytest.approx(0.4),
                          ("key:k2", "m:2025-03"): pytest.approx(0.2), ("key:k3", "m:2025-03"): pytest.approx(0.05),
                          ("user:alice", "m:2025-03"): pytest.approx(0.7),
                          ("user:alice", "d:2025-03-14"): pytest.approx(0.4),
                          ("user:bob", "m:2025-03"): pytest.approx(0.05),
                          ("tier:pro", "m:2025-03"): pytest.approx(0.75),
                          ("tier:pro", "d:2025-03-14"): pytest.approx(0.4)}
    finally:
        await ledger.stop()


async def test_stop_writes_every_row_posted_before_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/spend.sqlite"
    ledger = ledger_for(url, tmp_path, batch_size=64)
    await ledger.start()
    for index in range(1000):
        ledger.post_record(row(f"s{index}", DAY1, "alice", "k1", 0.001, 0.01))
    await ledger.stop()
    store = open_spend_store(url)
    try:
        (total,) = await store.usage(UsageQuery(DAY1, DAY1, group_by="day"))
    finally:
        await store.close()
    assert total.requests == 1000 and total.actual_usd == pytest.approx(1.0)


async def test_a_database_that_is_down_spools_the_rows_and_they_are_replayed(tmp_path: Path) -> None:
    down = ledger_for("postgresql://postgres@127.0.0.1:1/none", tmp_path)
    await down.start()
    for record in ROWS[:3]:
        down.post_record(record)
    await down.stop()  # stopping while the database is down loses nothing: the rows are in the spool
    assert not down.healthy and down.status()["spooled"] == 3
    assert len((tmp_path / "spend.spool.jsonl").read_text().splitlines()) == 3
    url = f"sqlite:///{tmp_path}/spend.sqlite"
    back = ledger_for(url, tmp_path)
    await back.start()
    try:
        back.post_record(ROWS[3])
        rows = await back.usage(UsageQuery(DAY1, DAY2, group_by="day"))
        assert [r.requests for r in rows] == [3, 1]  # spooled rows first, then the new one
        assert not (tmp_path / "spend.spool.jsonl").exists()
    finally:
        await back.stop()


async def test_post_never_blocks_and_drops_past_the_queue(tmp_path: Path) -> None:
    ledger = ledger_for(f"sqlite:///{tmp_path}/spend.sqlite", tmp_path, queue_size=5)
    ledger.post_record(ROWS[0])  # not started: dropped, counted
    await ledger.start()
    try:
        for index in range(50):
            ledger.post_record(row(f"q{index}", DAY1, "alice", "k1", 0.01, 0.02))
        await asyncio.sleep(0)
        assert ledger.status()["dropped"] >= 1
    finally:
        await ledger.stop()
