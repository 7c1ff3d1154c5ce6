"""Settings of the spend ledger: where each request's cost is kept, and how writes are batched."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from router.paths import resolve_path, resolve_sqlite_url

if TYPE_CHECKING:
    from router.settings import Settings

DEFAULT_URL = "sqlite:///var/spend.sqlite"
_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


class SpendSettings(BaseModel):
    """The spend ledger: one row per request (actual cost, strong-only cost, key, user), read by `GET /v1/usage`,
    `cascadeflow usage` and the budgets at start-up. Rows are queued and written in batches off the event loop;
    while the database is down they go to `spool_path` and are replayed when it is back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    url: str | None = None
    """sqlite:///path or postgresql://... Unset: `database.url`; else, in a loaded config, the outcome log's
    PostgreSQL database, else the key store's, else sqlite:///var/spend.sqlite under the data directory; unset in
    settings built without `load_settings`: nothing is persisted (budgets still count in memory)."""
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(256, ge=1)
    flush_interval_ms: float = Field(200.0, ge=1.0)
    spool_path: str | None = "var/spend.spool.jsonl"
    journal: bool = True
    """Append each row to the write-ahead journal before its request is acknowledged, so a killed process loses
    no answered request's row (off: a crash loses the rows of the last `flush_interval_ms`)."""
    journal_path: str | None = None
    """The journal's directory (None: `<sqlite file>.journal.d`, else `spend.journal.d` next to the spool, else
    `var/spend.journal.d` under the data directory)."""
    journal_fsync: bool = False
    """Also survive a machine crash: each answer waits for a group fsync of the journal (about a disk flush)."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_SCHEMES):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


def _postgres(url: str | None) -> bool:
    return url is not None and url.startswith(("postgresql://", "postgres://"))


def resolve_spend(settings: Settings, base: Path, environ: Mapping[str, str]) -> SpendSettings:
    """The spend settings with the database chosen (see `SpendSettings.url`) and relative paths under `base`."""
    spend, log = settings.spend, settings.outcome_log
    url = spend.url
    if url is None:
        store = settings.auth.store
        url = log.url if log.enabled and _postgres(log.url) else store if store and _postgres(store) else DEFAULT_URL
    spool = resolve_path(spend.spool_path, base, environ) if spend.spool_path else None
    url = resolve_sqlite_url(url, base, environ)
    journal = spend.journal_path or (None if url.startswith("sqlite:///") or spool else "var/spend.journal.d")
    journal = resolve_path(journal, base, environ) if journal else None
    return spend.model_copy(update={"url": url, "spool_path": spool, "journal_path": journal})
