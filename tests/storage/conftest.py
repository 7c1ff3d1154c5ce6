"""Outcome logs on both backends: a SQLite file, and a fresh database on the machine's real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_SERVER = os.environ.get("CASCADEFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


async def _admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_database() -> Iterator[str]:
    """A fresh database on the real server, dropped afterwards (fails in CI, skips elsewhere, when absent)."""
    name = f"cf_test_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f"CREATE DATABASE {name}"))
    except Exception as exc:  # any connection problem means there is no usable server here
        message = f"PostgreSQL not reachable at {PG_SERVER}: {exc}"
        if os.environ.get("CASCADEFLOW_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty outcome log on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/outcomes.sqlite"
    else:
        yield from postgres_database()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL database."""
    yield from postgres_database()


def settings_for(url: str, tmp_path: Path, **changes: Any) -> Any:
    from router.learning_settings import OutcomeLogSettings

    return OutcomeLogSettings(url=url, spool_path=str(tmp_path / "spool.jsonl"), flush_interval_ms=20, **changes)
