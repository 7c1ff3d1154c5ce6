"""A stored proxy key: its non-secret id, its owner, tier and limits, and its SHA-256 digest (never the key)."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

KEY_PREFIX = "cfk_"
"""Keys made by `cascadeflow keys create` start with this, then their id, `_` and the secret."""
COLUMNS = ("id", "key_sha256", "user_name", "tier", "rpm", "tpm", "max_concurrent", "created_at", "revoked_at",
           "daily_budget_usd", "monthly_budget_usd", "admin")
ADDED_COLUMNS = COLUMNS[9:]
"""Columns added after the first release: stores made before them gain them on first use."""


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a proxy key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredKey:
    """One proxy key as the store holds it."""

    id: str
    key_sha256: str
    user: str
    tier: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    created_at: float = 0.0
    revoked_at: float | None = None
    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None
    admin: bool = False

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def revoked(self, at: float | None = None) -> StoredKey:
        """This key, revoked now (or at the given time)."""
        return replace(self, revoked_at=time.time() if at is None else at)

    def row(self) -> tuple[Any, ...]:
        """The values of COLUMNS."""
        return (self.id, self.key_sha256, self.user, self.tier, self.rpm, self.tpm, self.max_concurrent,
                self.created_at, self.revoked_at, self.daily_budget_usd, self.monthly_budget_usd, self.admin)

    @classmethod
    def of_row(cls, row: Any) -> StoredKey:
        """A key from a row of COLUMNS (a sequence, or a mapping by column name; columns added later may be
        missing from a mapping written before them)."""
        values = [row.get(name) if name in ADDED_COLUMNS else row[name] for name in COLUMNS] if hasattr(
            row, "keys") else list(row)
        key, digest, user, tier, rpm, tpm, concurrent, created, revoked, daily, monthly, admin = values
        return cls(str(key), str(digest), str(user), tier, _int(rpm), _int(tpm), _int(concurrent), float(created),
                   _float(revoked), _float(daily), _float(monthly), bool(admin))

    def to_json(self) -> dict[str, Any]:
        """The key as a JSON object (no secret in it)."""
        return {name: value for name, value in zip(COLUMNS, self.row(), strict=True)}

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> StoredKey:
        """A key from `to_json`."""
        return cls.of_row(data)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def new_key(user: str, *, tier: str | None = None, rpm: int | None = None, tpm: int | None = None,
            max_concurrent: int | None = None, daily_budget_usd: float | None = None,
            monthly_budget_usd: float | None = None, admin: bool = False) -> tuple[str, StoredKey]:
    """A fresh secret key (to show once) and its record (to store)."""
    key_id = "k" + secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, StoredKey(key_id, hash_key(key), user, tier, rpm, tpm, max_concurrent, created_at=time.time(),
                          daily_budget_usd=daily_budget_usd, monthly_budget_usd=monthly_budget_usd, admin=admin)


def looks_like_proxy_key(key: str) -> bool:
    """Whether a key was made by `cascadeflow keys create` (never forwarded to a provider)."""
    return key.startswith(KEY_PREFIX)
