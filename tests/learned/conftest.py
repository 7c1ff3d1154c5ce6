"""Fixtures shared with the storage tests: `log_url`, an empty outcome log on SQLite and on PostgreSQL."""

from tests.storage.conftest import log_url  # noqa: F401 (a fixture, used by name)
