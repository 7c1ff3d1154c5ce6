"""Acknowledged records survive a crash; a store that is down loses nothing: records wait in the spool."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from router.storage import open_outcome_log
from router.storage.records import OutcomeRecord
from tests.storage.conftest import settings_for

ROOT = Path(__file__).resolve().parents[2]


def test_no_acknowledged_record_is_lost_when_the_writer_is_killed(log_url: str, tmp_path: Path) -> None:
    acks = tmp_path / "acks.txt"
    acks.touch()
    writer = subprocess.Popen([sys.executable, "-m", "tests.storage.crash_writer", log_url, str(acks),
                               str(tmp_path / "spool.jsonl")], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while len(acks.read_text().split()) < 400:
            assert writer.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer acknowledged too little"
            time.sleep(0.02)
        writer.send_signal(signal.SIGKILL)  # mid-write: it never stops submitting and flushing
    finally:
        writer.kill()
        writer.wait()
    acknowledged = set(acks.read_text().split())
    if log_url.startswith("sqlite"):
        path = log_url[len("sqlite:///"):]
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)

    import asyncio

    stored = {record.request_id for record in asyncio.run(open_outcome_log(log_url).query())}
    assert acknowledged and acknowledged <= stored


async def test_a_store_that_is_down_spools_and_replays_when_back(pg_url: str, tmp_path: Path) -> None:
    down = open_outcome_log(settings_for("postgresql://postgres@127.0.0.1:1/nowhere", tmp_path))
    await down.start()  # does not raise
    records = [OutcomeRecord(request_id=f"r{i}", created_at=time.time(), tenant="t", endpoint="chat",
                             requested_model="m", route="draft") for i in range(5)]
    assert all(down.submit(record) for record in records)
    assert down.submit_label("r2", True, "agreement:exact")
    await down.flush()  # acknowledged: in the spool, fsynced
    status = down.status()
    assert status["healthy"] is False and status["spooled"] == 5 and "last_error" in status
    await down.stop()
    assert len((tmp_path / "spool.jsonl").read_text().splitlines()) == 6

    back = open_outcome_log(settings_for(pg_url, tmp_path))
    await back.start()
    try:
        stored = await back.query()
        assert [r.request_id for r in stored] == [f"r{i}" for i in range(5)]
        assert [r.request_id for r in stored if r.label] == ["r2"]
        assert not (tmp_path / "spool.jsonl").exists()
        assert back.status()["healthy"] is True
    finally:
        await back.stop()


async def test_a_failing_sqlite_file_spools_instead_of_losing_records(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    log = open_outcome_log(settings_for(f"sqlite:///{blocker}/outcomes.sqlite", tmp_path))
    await log.start()
    log.submit(OutcomeRecord(request_id="r", created_at=time.time(), tenant="t", endpoint="chat",
                             requested_model="m", route="draft"))
    await log.stop()
    assert log.status()["spooled"] == 1 and log.status()["healthy"] is False
    assert '"request_id": "r"' in (tmp_path / "spool.jsonl").read_text()
