"""The write-ahead journal: appends, segments forgotten once done, orphans of dead processes replayed once, the
append's cost; and the outcome log and spend ledger writing what a killed process had journaled."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from router.metrics import Metrics
from router.replay.runner import BackgroundServer
from router.spend.ledger import SpendLedger
from router.spend.settings import SpendSettings
from router.spend.stores import open_spend_store
from router.storage import open_outcome_log
from router.storage.journal import Journal
from router.storage.records import LabelUpdate, OutcomeRecord, from_spool, journal_line, to_row
from tests.storage.conftest import settings_for
from tests.support import ProxyFactory, proxy_settings

ROOT = Path(__file__).resolve().parents[2]


def segments(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".jsonl"))


def test_segments_are_forgotten_once_their_records_are_done(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=100)
    first = [journal.append(b'{"n": %d}' % index) for index in range(12)]  # 9 bytes a line: rotated past 100
    assert first[0] == 1 and first[-1] == 2 and len(segments(tmp_path)) == 2
    journal.done(first[:11])
    assert len(segments(tmp_path)) == 1, "the full first segment is deleted once all its records are done"
    journal.done(first[11:])
    assert len(segments(tmp_path)) == 1 and os.path.getsize(tmp_path / segments(tmp_path)[0]) == 0, \
        "the current segment is emptied, not deleted"
    journal.append(b'{"n": 99}')
    journal.close()  # one record not done: kept for the next start
    (orphan,) = Journal(tmp_path).orphans()
    assert orphan.lines == [b'{"n": 99}']
    orphan.forget()
    assert segments(tmp_path) == []


def test_only_segments_of_processes_that_are_gone_are_replayed(tmp_path: Path) -> None:
    live, dead = Journal(tmp_path), Journal(tmp_path)
    live.append(b'{"who": "live"}')
    dead.append(b'{"who": "dead"}')
    dead.close()  # as a killed process: its lock is gone, its undone records stay
    found = list(Journal(tmp_path).orphans())
    assert [orphan.lines for orphan in found] == [[b'{"who": "dead"}']]
    assert list(Journal(tmp_path).orphans()) == [], "a claimed segment is locked until it is let go"
    found[0].forget()
    assert list(Journal(tmp_path).orphans()) == [] and len(segments(tmp_path)) == 1  # the live one remains
    live.close()


def test_a_line_torn_by_a_machine_crash_is_returned_as_it_is(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(b'{"ok": 1}')
    journal.close()
    with (tmp_path / segments(tmp_path)[0]).open("ab") as handle:
        handle.write(b'{"torn')
    (orphan,) = Journal(tmp_path).orphans()
    assert orphan.lines == [b'{"ok": 1}', b'{"torn']  # the readers skip what they cannot parse
    orphan.release()


async def test_group_fsync_waits_for_the_disk(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync=True)
    journal.append(b"{}")
    await asyncio.wait_for(journal.synced(), 10)
    await asyncio.wait_for(asyncio.gather(*(journal.synced() for _ in range(20))), 10)  # nothing new: at once
    journal.close()


def test_journal_lines_round_trip_records_and_labels() -> None:
    from tests.storage.test_outcome_log import bare_record, full_record

    items = [replace(full_record("r1"), record_id="a" * 24, features=(np.float64(1.5), 2.0)), bare_record("r2"),
             LabelUpdate("r1", True, "agreement:exact", "same text")]
    assert [from_spool(journal_line(item)) for item in items] == items
    odd = replace(bare_record("r3\ud800"), prompt_text="nul\x00", record_id="b" * 24)  # not plain JSON: spool form
    assert to_row(from_spool(journal_line(odd))) == to_row(odd)


def test_an_append_costs_microseconds(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    record = OutcomeRecord(request_id="req_0123456789abcdef01234567", created_at=time.time(), tenant="user:ann",
                           endpoint="messages", requested_model="claude-sonnet-4-5", route="escalated",
                           reason="confidence 0.41 < 0.7", prompt_sha256="ab" * 32, embedding=bytes(1536),
                           features=tuple(float(i) for i in range(24)), record_id="0" * 24)
    line = journal_line(record)
    count = 2000
    started = time.perf_counter()
    numbers = [journal.append(line) for _ in range(count)]
    write_us = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    for _ in range(count):
        journal_line(record)
    encode_us = (time.perf_counter() - started) / count * 1e6
    journal.done(numbers)
    journal.close()
    print(f"journal append: {write_us:.1f} us write + {encode_us:.1f} us encoding a {len(line)}-byte record")
    assert write_us + encode_us < 500  # a page-cache write: tens of microseconds even on a slow disk


def kill_after_acks(mode: str, store: str, journal: Path, acks: Path, wanted: int) -> None:
    """Run the writer script until it has acknowledged `wanted` items, then SIGKILL it."""
    acks.touch()
    writer = subprocess.Popen([sys.executable, "-m", "tests.storage.journal_writer", mode, store, str(journal),
                               str(acks)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while len(acks.read_text().split()) < wanted:
            assert writer.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer acknowledged too little"
            time.sleep(0.02)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()


async def test_records_of_a_killed_process_are_written_once_at_the_next_start(log_url: str, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    kill_after_acks("outcomes", log_url, journal, tmp_path / "acks.txt", 500)  # its writer never committed any
    acknowledged = set((tmp_path / "acks.txt").read_text().split())
    log = open_outcome_log(settings_for(log_url, tmp_path, journal_path=str(journal)))
    await log.start()
    await log.stop()
    stored = [record.request_id for record in await log.query()]
    assert acknowledged and acknowledged <= set(stored)
    assert len(stored) == len(set(stored)), "each record once"
    assert log.status()["recovered"] >= len(acknowledged) and segments(journal) == []
    if log_url.startswith("sqlite"):
        connection = sqlite3.connect(log_url[len("sqlite:///"):])
        assert connection.execute("SELECT COUNT(*) FROM outcomes WHERE record_id IS NULL").fetchone() == (0,)


async def test_spend_rows_of_a_killed_process_are_written_once_at_the_next_start(log_url: str,
                                                                                 tmp_path: Path) -> None:
    spend_url = log_url.replace("outcomes.sqlite", "spend.sqlite")  # an empty database on either backend
    journal = tmp_path / "journal"
    kill_after_acks("spend", spend_url, journal, tmp_path / "acks.txt", 500)
    acknowledged = set((tmp_path / "acks.txt").read_text().split())
    settings = SpendSettings(url=spend_url, spool_path=None, journal_path=str(journal))
    ledger = SpendLedger(open_spend_store(spend_url), settings, Metrics())
    await ledger.start()  # the journal is written before start returns (the budgets read it next)
    try:
        assert ledger.status()["recovered"] >= len(acknowledged) and segments(journal) == []
        assert acknowledged <= set(await spend_ids(spend_url))  # keyed by request id: each row once
    finally:
        await ledger.stop()


async def spend_ids(url: str) -> list[str]:
    """The request ids of the spend table."""
    if url.startswith("sqlite:///"):
        connection = sqlite3.connect(url[len("sqlite:///"):])
        try:
            return [row[0] for row in connection.execute("SELECT request_id FROM cascadeflow_spend")]
        finally:
            connection.close()
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return [row["request_id"] for row in await connection.fetch("SELECT request_id FROM cascadeflow_spend")]
    finally:
        await connection.close()


@pytest.mark.parametrize("fsync", [False, True])
def test_an_answer_completes_only_once_its_records_are_journaled(proxy_factory: ProxyFactory,
                                                                  upstream: BackgroundServer, tmp_path: Path,
                                                                  fsync: bool) -> None:
    never = 3_600_000.0  # the writers commit nothing during the test: the journals alone hold the records
    proxy = proxy_factory(proxy_settings(
        upstream.url, outcome_log={"enabled": True, "url": f"sqlite:///{tmp_path}/o.sqlite", "spool_path": None,
                                   "flush_interval_ms": never, "journal_fsync": fsync},
        spend={"url": f"sqlite:///{tmp_path}/s.sqlite", "spool_path": None, "flush_interval_ms": never,
               "journal_fsync": fsync}))
    for stream in (False, True):
        request_id = f"journaled-{fsync}-{stream}"
        with httpx.stream("POST", proxy.url + "/v1/messages", timeout=30,
                          headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "x-request-id": request_id},
                          json={"model": "claude-sonnet-4-5", "max_tokens": 16, "stream": stream,
                                "messages": [{"role": "user", "content": "Hello"}]}) as reply:
            reply.read()
            assert reply.status_code == 200
        for journal in (tmp_path / "o.sqlite.journal.d", tmp_path / "s.sqlite.journal.d"):  # already there
            lines = b"".join((journal / name).read_bytes() for name in segments(journal))
            assert request_id.encode() in lines, (journal, stream)


def test_each_journal_has_a_place_under_the_data_directory(tmp_path: Path) -> None:
    from router.settings import load_settings
    from router.spend.ledger import journal_directory as spend_journal
    from router.storage.outcome_journal import journal_directory as outcome_journal

    config = tmp_path / "config.yaml"
    config.write_text("outcome_log: {url: 'sqlite:///db/o.sqlite'}\n")
    local = load_settings(config, environ={})
    assert outcome_journal(local.outcome_log) == tmp_path / "db" / "o.sqlite.journal.d"
    assert spend_journal(local.spend) == tmp_path / "var" / "spend.sqlite.journal.d"
    config.write_text("outcome_log: {url: 'postgresql://db/x', spool_path: null}\nspend: {spool_path: null}\n")
    shared = load_settings(config, environ={})
    assert outcome_journal(shared.outcome_log) == tmp_path / "var" / "outcomes.journal.d"
    assert spend_journal(shared.spend) == tmp_path / "var" / "spend.journal.d"
    config.write_text("outcome_log: {url: 'postgresql://db/x', journal: false}\nspend: {journal: false}\n")
    off = load_settings(config, environ={})
    assert outcome_journal(off.outcome_log) is None and spend_journal(off.spend) is None
