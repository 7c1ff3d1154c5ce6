"""`cascadeflow usage`: the per-day table (and JSON) read from the spend ledger's database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from router.cli import main
from router.spend.stores import open_spend_store
from tests.spend.test_ledger import row

TODAY = datetime.now(tz=UTC).date()
YESTERDAY, LONG_AGO = TODAY - timedelta(days=1), TODAY - timedelta(days=10)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose spend ledger (relative to it) holds rows of today, yesterday and ten days ago."""
    path = tmp_path / "config.yaml"
    path.write_text("spend:\n  url: sqlite:///var/spend.sqlite\n")
    rows = [row("a", TODAY, "alice", "k1", 0.10, 1.00), row("b", TODAY, "bob", "k3", 0.05, None, wasted_usd=0.05),
            row("c", YESTERDAY, "alice", "k2", 0.20, 0.50), row("d", YESTERDAY, "alice", "k1", 0.20, 0.50),
            row("e", LONG_AGO, "alice", "k1", 5.0, 5.0)]

    async def write() -> None:
        store = open_spend_store(f"sqlite:///{tmp_path}/var/spend.sqlite")
        await store.write(rows)
        await store.close()

    asyncio.run(write())
    return path


def test_a_per_day_table_per_user(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--config", str(config), "--days", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["DATE", "USER", "REQUESTS", "ACTUAL", "USD", "STRONG-ONLY", "USD", "SAVED", "USD",
                                "SAVED", "WASTED", "DRAFT", "USD"]
    assert [line.split()[:3] for line in lines[1:-1]] == [
        [YESTERDAY.isoformat(), "alice", "2"], [TODAY.isoformat(), "alice", "1"], [TODAY.isoformat(), "bob", "1"]]
    assert lines[1].split()[3:] == ["0.400000", "1.000000", "0.600000", "60.0%", "0.000000"]
    assert lines[3].split()[3:] == ["0.050000", "0.050000", "0.000000", "0.0%", "0.050000"]  # unknown strong-only
    assert lines[-1].split() == ["TOTAL", "4", "0.550000", "2.050000", "1.500000", "73.2%", "0.050000"]
    assert f"{TODAY - timedelta(days=2)} to {TODAY}" in err and "spend.sqlite" in err


def test_one_user_per_key_and_as_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--config", str(config), "--user", "alice", "--group-by", "key",
                 "--start", LONG_AGO.isoformat(), "--end", TODAY.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in lines[1:-1]] == [
        [LONG_AGO.isoformat(), "alice", "k1", "1"], [YESTERDAY.isoformat(), "alice", "k1", "1"],
        [YESTERDAY.isoformat(), "alice", "k2", "1"], [TODAY.isoformat(), "alice", "k1", "1"]]
    assert main(["usage", "--config", str(config), "--json", "--group-by", "day"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(entry["date"], entry["requests"]) for entry in report["data"]] == [
        (YESTERDAY.isoformat(), 2), (TODAY.isoformat(), 2)]
    assert report["total"]["actual_cost_usd"] == pytest.approx(0.55) and report["scope"] == "all"


def test_no_ledger_yet_and_bad_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("spend:\n  url: sqlite:///var/spend.sqlite\n")
    assert main(["usage", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[:2] == ["TOTAL", "0"]
    assert not (tmp_path / "var" / "spend.sqlite").exists()  # reading creates nothing
    assert main(["usage", "--config", str(config), "--start", TODAY.isoformat(), "--end",
                 YESTERDAY.isoformat()]) == 2
    assert "is after end" in capsys.readouterr().err
    config.write_text("spend:\n  enabled: false\n")
    assert main(["usage", "--config", str(config)]) == 2
