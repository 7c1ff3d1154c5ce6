"""`kill -9` of a proxy under concurrent load: every request it had answered has exactly one outcome record and one
spend row once it has started again (benchmarks/kill_durability.py, one round, on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.kill_durability import run_round
from router.replay.runner import BackgroundServer

pytestmark = pytest.mark.slow  # two proxy processes and a few hundred requests


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_answered_request_loses_its_records_when_the_proxy_is_killed(upstream: BackgroundServer, tmp_path: Path,
                                                                        backend: str,
                                                                        request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        outcome_url, spend_url = f"sqlite:///{tmp_path}/outcomes.sqlite", f"sqlite:///{tmp_path}/spend.sqlite"
    else:
        outcome_url = spend_url = request.getfixturevalue("pg_url")  # skips cleanly without a server
    result = run_round(upstream.url, tmp_path / "proxy", outcome_url, spend_url, requests=800, kill_after=300)
    print(f"{backend}: {result}")
    assert result.acknowledged >= 300
    assert (result.outcome_missing, result.outcome_duplicates, result.spend_missing) == (0, 0, 0)
    assert result.recovered_outcomes > 0 and result.recovered_spend > 0, "the kill left records to the journals"
