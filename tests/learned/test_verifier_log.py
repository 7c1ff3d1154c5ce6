"""The verifier's feature row in the outcome log: computed once per judged draft, the same row the verifier
would compute, written to both stores and read back, and added to tables made before it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest

from router.replay.runner import BackgroundServer
from router.replay.scripted import WEAK_TEXT
from router.scoring import ConfidenceScorer, DraftEvidence
from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION, verifier_features
from router.storage import open_outcome_log
from router.storage.records import COLUMNS, STORED_COLUMNS, OutcomeRecord, to_row
from tests.learned.support import RULES, wait_for
from tests.storage.conftest import settings_for
from tests.support import ProxyFactory, marker, proxy_settings

WEAK = "[[weak:claude-haiku-4-5]]"


def answer(text: str, stop: str = "end_turn", tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}, *(tools or [])],
            "stop_reason": stop}


def request(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize("evidence", [
    DraftEvidence(request("What is 12 + 30?"), answer("12 + 30 = 42. The answer is 42.")),
    DraftEvidence(request("Explain tides."), answer("I'm not sure, it might be the moon; I think it depends."),
                  logprobs=(-0.1, -2.5, -0.3), predicted_good=0.4, agreement=0.5),
    DraftEvidence(request("Write a long essay."), answer("It was a dark and", stop="max_tokens")),  # a hard fail
    DraftEvidence(request("Say nothing."), answer("")),
    DraftEvidence({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                   "tools": [{"name": "get_weather", "input_schema": {"type": "object", "required": ["city"]}}]},
                  answer("", stop="tool_use", tools=[{"type": "tool_use", "id": "t1", "name": "get_weather",
                                                     "input": {}}])),
], ids=["maths", "hedging-with-evidence", "truncated", "empty", "broken-tool-call"])
def test_the_row_from_the_scorers_components_is_the_row_the_measures_give(evidence: DraftEvidence) -> None:
    measured = ConfidenceScorer().score(evidence).components
    assert verifier_features(evidence, measured) == verifier_features(evidence)


def test_drafted_requests_log_their_verifier_row_on_both_stores(
        proxy_factory: ProxyFactory, upstream: BackgroundServer, log_url: str, tmp_path: Path) -> None:
    proxy = proxy_factory(proxy_settings(
        upstream.url, cascade_rules=RULES,
        outcome_log={"url": log_url, "flush_interval_ms": 20, "spool_path": str(tmp_path / "spool.jsonl")}))
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    tag = marker()
    prompts = {"draft": f"Tell me a greeting {tag}. [[text:Hello there, friend.]]",
               "escalated": f"Prove the Riemann hypothesis {tag}. {WEAK}"}
    for route, prompt in prompts.items():
        reply = claude.messages.with_raw_response.create(model="claude-opus-4-8", max_tokens=100,
                                                         messages=[{"role": "user", "content": prompt}])
        assert reply.headers["x-cascadeflow-route"] == route
    claude.messages.create(model="claude-haiku-4-5", max_tokens=100,  # no rule: passed through, never drafted
                           messages=[{"role": "user", "content": f"hello {tag}"}])
    records = wait_for(log_url, lambda found: len(found) == 3)
    by_route = {record.route: record for record in records}
    assert by_route["pass_through"].verifier_features is None
    assert by_route["pass_through"].verifier_features_version is None
    drafts = {"draft": "Hello there, friend.", "escalated": WEAK_TEXT}
    for route, text in drafts.items():
        logged = by_route[route]
        assert logged.verifier_features_version == VERIFIER_FEATURES_VERSION
        assert logged.verifier_features == verifier_features(DraftEvidence(request(prompts[route]), answer(text)))
        row = dict(zip(VERIFIER_FEATURE_NAMES, logged.verifier_features or (), strict=True))
        assert row["measure_hedging"] < 1.0 if route == "escalated" else row["measure_hedging"] == 1.0
    assert by_route["draft"].prompt_text is None, "the row is numbers only: no text is stored for it"


def drafted(request_id: str, row: tuple[float, ...] | None = None) -> OutcomeRecord:
    return OutcomeRecord(request_id=request_id, created_at=time.time(), tenant="t", endpoint="messages",
                         requested_model="claude-opus-4-8", route="draft", draft_model="claude-haiku-4-5",
                         strong_model="claude-opus-4-8", accepted=True, prompt_sha256="ab" * 32,
                         verifier_features=row, verifier_features_version="1" if row is not None else None)


async def _make_old_table(url: str, old: OutcomeRecord) -> None:
    """A table as a proxy made it before records had ids or verifier rows, holding one record."""
    values = dict(zip(STORED_COLUMNS, to_row(old), strict=True))
    if url.startswith("sqlite:///"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        connection.execute(f"CREATE TABLE outcomes (id INTEGER PRIMARY KEY AUTOINCREMENT, {', '.join(COLUMNS)})")
        connection.execute(f"INSERT INTO outcomes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                           [values[name] for name in COLUMNS])
        connection.commit()
        connection.close()
        return
    import asyncpg

    from router.storage.postgres import TABLE, _column_type

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"CREATE TABLE {TABLE} (id BIGSERIAL PRIMARY KEY, "
                                 + ", ".join(f"{name} {_column_type(name)}" for name in COLUMNS) + ")")
        await connection.execute(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
                                 f"({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))})",
                                 *[values[name] for name in COLUMNS])
    finally:
        await connection.close()


async def test_an_older_table_is_read_as_it_is_and_gains_the_columns_at_open(log_url: str, tmp_path: Path) -> None:
    old, row = drafted("old"), tuple(float(i) for i in range(len(VERIFIER_FEATURE_NAMES)))
    await _make_old_table(log_url, old)
    assert await open_outcome_log(log_url).query() == [old], "a reader never changes the table, and copes"
    log = open_outcome_log(settings_for(log_url, tmp_path))
    await log.start()
    try:
        new = drafted("new", row)
        assert log.submit(new)
        await log.flush()
        assert log.status()["healthy"] is True and log.status()["written"] == 1
        found = await log.query()
        assert [(r.request_id, r.verifier_features, r.verifier_features_version) for r in found] == [
            ("old", None, None), ("new", row, "1")]
    finally:
        await log.stop()


def test_the_journal_and_the_spool_keep_the_row() -> None:
    from router.storage.records import from_spool, journal_line, to_spool

    record = drafted("r", (1.5, float("nan"), -30.0))
    for line in (journal_line(record), to_spool(record)):
        back = from_spool(line)
        assert isinstance(back, OutcomeRecord) and back.verifier_features_version == "1"
        values = back.verifier_features or ()
        assert values[0] == 1.5 and values[1] != values[1] and values[2] == -30.0  # NaN stays NaN
