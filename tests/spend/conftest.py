"""The spend ledger on both backends: a SQLite file, and a fresh database on the machine's real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.conftest import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def spend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty spend ledger on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/spend.sqlite"
    else:
        yield from postgres_database()
