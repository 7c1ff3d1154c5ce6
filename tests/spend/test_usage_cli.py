"""`cascadeflow usage`: the per-day table (and JSON) read from the spend ledger's database."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from router.cli import main
from router.spend.stores import open_spend_store
from tests.spend.test_ledger import row


@dataclass(frozen=True)
class Dates:
    """Today (UTC) as the test runs, not as the module was collected: a suite may cross midnight."""

    today: date

    @property
    def yesterday(self) -> date:
        return self.today - timedelta(days=1)

    @property
    def long_ago(self) -> date:
        return self.today - timedelta(days=10)


@pytest.fixture
def dates() -> Dates:
    return Dates(datetime.now(tz=UTC).date())


@pytest.fixture
def config(tmp_path: Path, dates: Dates) -> Path:
    """A config whose spend ledger (relative to it) holds rows of today, yesterday and ten days ago."""
    path = tmp_path / "config.yaml"
    path.write_text("spend:\n  url: sqlite:///var/spend.sqlite\n")
    rows = [row("a", dates.today, "alice", "k1", 0.10, 1.00),
            row("b", dates.today, "bob", "k3", 0.05, None, wasted_usd=0.05),
            row("c", dates.yesterday, "alice", "k2", 0.20, 0.50), row("d", dates.yesterday, "alice", "k1", 0.20, 0.50),
            row("e", dates.long_ago, "alice", "k1", 5.0, 5.0)]

    async def write() -> None:
        store = open_spend_store(f"sqlite:///{tmp_path}/var/spend.sqlite")
        await store.write(rows)
        await store.close()

    asyncio.run(write())
    return path


def test_a_per_day_table_per_user(config: Path, capsys: pytest.CaptureFixture[str], dates: Dates) -> None:
    assert main(["usage", "--config", str(config), "--days", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["DATE", "USER", "REQUESTS", "ACTUAL", "USD", "STRONG-ONLY", "USD", "SAVED", "USD",
                                "SAVED", "WASTED", "DRAFT", "USD"]
    assert [line.split()[:3] for line in lines[1:-1]] == [
        [dates.yesterday.isoformat(), "alice", "2"], [dates.today.isoformat(), "alice", "1"],
        [dates.today.isoformat(), "bob", "1"]]
    assert lines[1].split()[3:] == ["0.400000", "1.000000", "0.600000", "60.0%", "0.000000"]
    assert lines[3].split()[3:] == ["0.050000", "0.050000", "0.000000", "0.0%", "0.050000"]  # unknown strong-only
    assert lines[-1].split() == ["TOTAL", "4", "0.550000", "2.050000", "1.500000", "73.2%", "0.050000"]
    assert f"{dates.today - timedelta(days=2)} to {dates.today}" in err and "spend.sqlite" in err


def test_one_user_per_key_and_as_json(config: Path, capsys: pytest.CaptureFixture[str], dates: Dates) -> None:
    assert main(["usage", "--config", str(config), "--user", "alice", "--group-by", "key",
                 "--start", dates.long_ago.isoformat(), "--end", dates.today.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in lines[1:-1]] == [
        [dates.long_ago.isoformat(), "alice", "k1", "1"], [dates.yesterday.isoformat(), "alice", "k1", "1"],
        [dates.yesterday.isoformat(), "alice", "k2", "1"], [dates.today.isoformat(), "alice", "k1", "1"]]
    assert main(["usage", "--config", str(config), "--json", "--group-by", "day"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(entry["date"], entry["requests"]) for entry in report["data"]] == [
        (dates.yesterday.isoformat(), 2), (dates.today.isoformat(), 2)]
    assert report["total"]["actual_cost_usd"] == pytest.approx(0.55) and report["scope"] == "all"


def test_no_ledger_yet_and_bad_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str], dates: Dates) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("spend:\n  url: sqlite:///var/spend.sqlite\n")
    assert main(["usage", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[:2] == ["TOTAL", "0"]
    assert not (tmp_path / "var" / "spend.sqlite").exists()  # reading creates nothing
    assert main(["usage", "--config", str(config), "--start", dates.today.isoformat(), "--end",
                 dates.yesterday.isoformat()]) == 2
    assert "is after end" in capsys.readouterr().err
    config.write_text("spend:\n  enabled: false\n")
    assert main(["usage", "--config", str(config)]) == 2
