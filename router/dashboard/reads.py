"""The dashboard's reads, off the event loop: the outcome log's light columns (no embeddings, features or answers)
folded on a worker thread, newest first and at most `MAX_RECORDS` of them; the spend ledger's sums per user. A
summary is computed once for everyone who asks within a few seconds (`cached_summary`)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.costs import PriceBook, TokenUsage
from router.dashboard.aggregate import DraftPrice, Summary, Window, spend_by_user
from router.dashboard.decisions import PROMPT_CHARS, rule_thresholds
from router.spend.records import UsageQuery
from router.storage.records import COLUMNS, OutcomeRecord, from_row

if TYPE_CHECKING:
    from router.services import Services
    from router.storage import OutcomeLog

logger = logging.getLogger("router.dashboard")
MAX_RECORDS = 200_000
"""The most records one summary reads (the newest); past it the answer says `truncated`."""
FLUSH_WAIT_S = 2.0
POSTGRES_PREFETCH = 2_000
_HEAVY = frozenset({"embedding", "features", "prompt_text", "draft_text", "strong_text"})
LIGHT_COLUMNS = tuple(name for name in COLUMNS if name not in _HEAVY)
_ABSENT: dict[str, Any] = dict.fromkeys(COLUMNS)
SQLITE_TABLE = "outcomes"


def light_sql(table: str, placeholder: str, *, with_prompt: bool) -> str:
    """The newest records since a moment (parameter 1), at most a number of them (parameter 2); `placeholder` is
    `?` or `$` (numbered)."""
    first, second = ("?", "?") if placeholder == "?" else ("$1", "$2")
    columns = list(LIGHT_COLUMNS) + ([f"substr(prompt_text, 1, {PROMPT_CHARS}) AS prompt_text"] if with_prompt else [])
    return (f"SELECT {', '.join(columns)} FROM {table} WHERE created_at >= {first} "
            f"ORDER BY id DESC LIMIT {second}")


def light_record(row: Mapping[str, Any]) -> OutcomeRecord:
    """A record from a row of `light_sql` (the columns not read are left empty)."""
    return from_row({**_ABSENT, **row})


def _fold(rows: Iterable[Mapping[str, Any]], summary: Summary) -> int:
    read = 0
    for row in rows:
        summary.add(light_record(row))
        read += 1
    return read


def _fold_sqlite(path: Path, summary: Summary, since: float, limit: int, with_prompt: bool) -> int:
    if not path.exists():
        return 0
    connection = sqlite3.connect(path, timeout=30.0)
    try:
        connection.row_factory = sqlite3.Row
        if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                              (SQLITE_TABLE,)).fetchone() is None:
            return 0
        cursor = connection.execute(light_sql(SQLITE_TABLE, "?", with_prompt=with_prompt), (since, limit))
        return _fold((dict(row) for row in cursor), summary)
    finally:
        connection.close()


async def _fold_postgres(url: str, summary: Summary, since: float, limit: int, with_prompt: bool) -> int:
    import asyncpg

    from router.storage.postgres import CONNECT_TIMEOUT_S, TABLE

    connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE):
            return 0
        read = 0
        async with connection.transaction(readonly=True):
            sql = light_sql(TABLE, "$", with_prompt=with_prompt)
            async for row in connection.cursor(sql, since, limit, prefetch=POSTGRES_PREFETCH):
                summary.add(light_record(dict(row)))
                read += 1
        return read
    finally:
        await connection.close()


def fold_outcomes(log: OutcomeLog, summary: Summary, since: float, limit: int, with_prompt: bool) -> int:
    """Fold the newest records since `since` (at most `limit`) into the summary; how many were read. Blocking:
    call it on a worker thread (PostgreSQL is read on an event loop of the thread's own)."""
    from router.storage.postgres import PostgresOutcomeLog
    from router.storage.sqlite import SQLiteOutcomeLog

    if isinstance(log, SQLiteOutcomeLog):
        return _fold_sqlite(log.path, summary, since, limit, with_prompt)
    if isinstance(log, PostgresOutcomeLog):
        return asyncio.run(_fold_postgres(log.url, summary, since, limit, with_prompt))
    records = asyncio.run(log.query(since=since))[-limit:]  # another implementation: its own reads
    for record in records:
        summary.add(record)
    return len(records)


def draft_pricer(services: Services) -> DraftPrice:
    """Prices of drafts' tokens from the config's prices and genai-prices (as the ledger prices them)."""
    book = PriceBook(model_info=services.settings.model_info)

    def price(model: str, input_tokens: int, output_tokens: int) -> float | None:
        cost = book.cost(model, TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens))
        return cost.usd if cost.known else None

    return price


def _failure(what: str, exc: Exception) -> str:
    logger.exception("the dashboard could not read the %s", what)
    return f"{type(exc).__name__}: {exc}"


async def _read_outcomes(services: Services, summary: Summary, since: float,
                         with_prompt: bool) -> dict[str, Any]:
    recorder = services.recorder
    if recorder is None:
        return {"enabled": False}
    log = recorder.log
    with suppress(TimeoutError):  # what this process queued shows at once (unless the store is slow)
        await asyncio.wait_for(log.flush(), FLUSH_WAIT_S)
    backend = log.status().get("backend")
    try:
        read = await asyncio.to_thread(fold_outcomes, log, summary, since, MAX_RECORDS, with_prompt)
    except Exception as exc:  # the page shows what it can, and why the rest is missing
        return {"enabled": True, "backend": backend, "read": 0, "truncated": False,
                "error": _failure("outcome log", exc)}
    return {"enabled": True, "backend": backend, "read": read, "truncated": read >= MAX_RECORDS, "error": None}


async def _read_spend(services: Services, window: Window) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    if services.spend is None:
        return {"enabled": False}, None
    days = [datetime.fromtimestamp(moment, tz=UTC).date() for moment in (window.since, window.until)]
    try:
        rows = await services.spend.usage(UsageQuery(days[0], days[1], None, None, "user"))
    except Exception as exc:  # the page falls back to the outcome log's tenants
        return {"enabled": True, "error": _failure("spend ledger", exc)}, None
    return {"enabled": True, "error": None, "start": days[0].isoformat(), "end": days[1].isoformat()}, \
        spend_by_user(rows)


async def dashboard_summary(services: Services, days: int, now: float) -> dict[str, Any]:
    """Everything the page shows for the last `days` days (see `Summary.to_json`), with where it came from."""
    settings = services.settings
    window = Window.last(days, now)
    show_content = settings.outcome_log.store_text
    summary = Summary(window, draft_price=draft_pricer(services) if services.recorder is not None else None,
                      thresholds=rule_thresholds(settings, services.verifier), show_content=show_content)
    outcomes = await _read_outcomes(services, summary, window.since, show_content)
    spend, users = await _read_spend(services, window)
    body = summary.to_json()
    tenants = body.pop("spend_by_tenant")
    return {
        "object": "dashboard.summary", "days": days, "generated_at": now, **body,
        "spend_by_user": {"source": "spend_ledger" if users is not None else "outcome_log",
                          "rows": users if users is not None else tenants},
        "sources": {"outcome_log": outcomes, "spend_ledger": spend, "content_logging": show_content,
                    "labels": services.recorder is not None and bool(settings.cascade_rules),
                    "exploration_rate": settings.labels.exploration_rate},
    }


SCOPE_ALL = "all"
"""The scope of every dashboard caller today: an admin (or, without proxy keys, loopback) sees the whole proxy."""


async def cached_summary(services: Services, days: int, scope: str = SCOPE_ALL,
                         clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """`dashboard_summary`, computed at most once per `SUMMARY_TTL_S` for each range and scope however many pages
    ask (router/dashboard/cache.py); `generated_at` says when."""
    return await services.dashboard.summaries.get(
        ("summary", days, scope), lambda: dashboard_summary(services, days, clock()))
