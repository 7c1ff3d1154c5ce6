"""The outcome log: one record per request, for retraining the router and tuning its thresholds."""

from __future__ import annotations

from typing import Protocol

from router.learning_settings import OutcomeLogSettings
from router.storage.records import OutcomeRecord


class OutcomeLog(Protocol):
    """What the proxy and the training code use of an outcome log (SQLite or PostgreSQL)."""

    async def start(self) -> None:
        """Open the store and start the writer; a store that is down degrades, it does not raise."""

    def submit(self, record: OutcomeRecord) -> bool:
        """Journal and queue a record without blocking; False when it had to be dropped."""

    def submit_label(self, request_id: str, label: bool, source: str, detail: str = "") -> bool:
        """Queue a label for an earlier record."""

    async def flush(self) -> None:
        """Return once everything submitted before the call is committed (or spooled)."""

    async def durable(self) -> None:
        """Return once everything submitted survives a machine crash (`journal_fsync`; at once otherwise)."""

    async def prune(self) -> None:
        """Apply the retention settings now."""

    async def query(self, *, labelled_only: bool = False, since: float | None = None,
                    limit: int | None = None) -> list[OutcomeRecord]:
        """Records, oldest first."""

    async def count(self) -> int:
        """How many records the store holds."""

    def status(self) -> dict[str, object]:
        """Health and counters, for /ready and the metrics.

        Keys: healthy, backend ("sqlite" | "postgresql"), queued, written, dropped, spooled, rejected (refused
        by the store as data, kept in `<spool_path>.rejected`), errors, deferred (in the journal alone, written at
        the next start), recovered (written at start from the journal of a process that stopped), journaled,
        journal_errors, last_error.
        """

    async def stop(self) -> None:
        """Write what is queued and close."""


def open_outcome_log(settings: OutcomeLogSettings | str) -> OutcomeLog:
    """The log a URL names (`sqlite:///path` or `postgresql://...`); nothing is opened before `start()`."""
    if isinstance(settings, str):  # reading a log (training, notebooks): no spool, no journal, no retention
        settings = OutcomeLogSettings(url=settings, spool_path=None, retention_days=None, max_rows=None, journal=False)
    if settings.url.startswith("sqlite://"):
        from router.storage.sqlite import SQLiteOutcomeLog

        return SQLiteOutcomeLog(settings)
    from router.storage.postgres import PostgresOutcomeLog

    return PostgresOutcomeLog(settings)


__all__ = ["OutcomeLog", "OutcomeRecord", "open_outcome_log"]
