"""Settings of client authentication: the mode, proxy keys in the config, the key store and rate-limit tiers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from router.paths import resolve_sqlite_url

if TYPE_CHECKING:
    from router.settings import Settings

AuthPolicy = Literal["api_key", "pass_through", "hybrid", "open"]
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
STORE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://", "redis://", "rediss://", "unix://")
DEFAULT_STORE = "sqlite:///var/keys.sqlite"
"""The key store when the config names none and no shared state is configured (under the data directory)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitSettings(_Strict):
    """Rate limits and USD budgets (each unset one does not apply)."""

    rpm: int | None = Field(None, ge=1)
    """Requests per minute."""
    tpm: int | None = Field(None, ge=1)
    """Tokens per minute: estimated input tokens on admission, reconciled with the real usage at the end."""
    max_concurrent: int | None = Field(None, ge=1)
    """Requests in flight at once."""
    daily_budget_usd: float | None = Field(None, ge=0.0)
    """USD spent per UTC day (the actual cost: cache tokens and thrown-away drafts included)."""
    monthly_budget_usd: float | None = Field(None, ge=0.0)
    """USD spent per UTC calendar month."""


class TierSettings(LimitSettings):
    """A tier: its limits and budgets hold for each user of the tier (across all of the user's keys; `auth.users`
    overrides them for one user); `total` caps the tier's users together."""

    total: LimitSettings = Field(default_factory=LimitSettings)


class ProxyKey(LimitSettings):
    """A client key of the proxy, stored only as its SHA-256 hex digest; its own limits hold per key."""

    key_sha256: str
    user: str = Field(min_length=1)
    id: str | None = None
    """A non-secret name for the key (default `cfg-` and the digest's first 10 characters)."""
    tier: str | None = None
    admin: bool = False
    """An admin key: may read everyone's usage and the admin endpoints (as the digests of `auth.admin_keys`)."""

    @field_validator("key_sha256")
    @classmethod
    def _is_digest(cls, value: str) -> str:
        return _digest(value)

    @property
    def key_id(self) -> str:
        """The key's non-secret id."""
        return self.id or "cfg-" + self.key_sha256[:10]


class AuthSettings(_Strict):
    """Client authentication: pass-through when no proxy key exists (neither in `keys` nor in the key store)."""

    mode: AuthPolicy | None = None
    """api_key: proxy keys only; pass_through: clients send their own provider keys; hybrid: proxy keys, and any
    other key is forwarded as a provider key; open: pass_through on any address, where anyone who reaches it spends
    the configured provider keys (say, behind your own gateway; a warning is logged at start). Unset: api_key when a
    proxy key exists (here or in the store), else pass_through (on loopback only)."""
    keys: list[ProxyKey] = Field(default_factory=list)
    admin_keys: list[str] = Field(default_factory=list)
    """SHA-256 digests of admin keys (in `keys` or in the store): they may read everyone's usage."""
    tiers: dict[str, TierSettings] = Field(default_factory=dict)
    """The older spelling of the top-level `tiers` (give one of the two; router/shared_state.py)."""
    users: dict[str, LimitSettings] = Field(default_factory=dict)
    """Per user: limits and budgets that override the user's tier's (for that user alone); the older spelling of
    the top-level `users`."""
    default_tier: str | None = None
    """The tier of keys created without one."""
    store: str | None = None
    """Where `cascadeflow keys create` keeps keys: sqlite:///path, postgresql://... or redis://... Unset:
    `database.url`; else, in a loaded config, the outcome log's PostgreSQL database, else `state.redis_url`, else
    the semantic cache's Redis, else sqlite:///var/keys.sqlite under the data directory."""
    refresh_interval_s: float = Field(1.0, gt=0.0, le=1.0)
    """How old the proxy's view of the key store may be: a revoked key is refused within this time."""
    limiter: Literal["auto", "embedded", "redis"] = "auto"
    """Where rate-limit counters live: in each process (embedded) or in Redis, shared by every replica (auto:
    Redis when `redis_url` is known)."""
    redis_url: str | None = None
    """The Redis of the limiter and the budgets. Unset: `state.redis_url`; else, in a loaded config, the key
    store's or the semantic cache's Redis."""
    redis_prefix: str = Field("cascadeflow:auth", min_length=1)

    @field_validator("admin_keys")
    @classmethod
    def _are_digests(cls, values: list[str]) -> list[str]:
        return [_digest(value) for value in values]

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(STORE_SCHEMES):
            raise ValueError("must start with sqlite:///, postgresql://, redis:// or rediss://")
        return value

    @model_validator(mode="after")
    def _tiers_exist(self) -> AuthSettings:
        named = [("default_tier", self.default_tier)] + [
            (f"keys.{index}.tier", key.tier) for index, key in enumerate(self.keys)]
        for where, tier in named:
            if tier is not None and tier not in self.tiers:
                known = ", ".join(sorted(self.tiers)) or "none configured"
                raise ValueError(f"{where}: unknown tier {tier!r} (tiers: {known})")
        return self

    @model_validator(mode="after")
    def _open_without_keys(self) -> AuthSettings:
        if self.mode == "open" and self.keys:
            raise ValueError("mode: open takes no proxy keys (keys has some): use api_key or hybrid")
        return self

    @property
    def passes_through(self) -> bool:
        """Whether clients' own keys (or none) are used whatever the key store holds: pass_through or open."""
        return self.mode in ("pass_through", "open")

    @property
    def requires_keys(self) -> bool:
        """Whether every request must bring a proxy key, whatever the key store holds (the config says so)."""
        return self.mode == "api_key" or (self.mode is None and bool(self.keys))

    @property
    def limiter_redis_url(self) -> str | None:
        """The Redis holding the rate-limit counters, or None for counters in this process."""
        if self.limiter == "embedded":
            return None
        if self.redis_url is not None:
            return self.redis_url
        return self.store if self.store is not None and is_redis(self.store) else None


def _digest(value: str) -> str:
    value = value.lower()
    if not _SHA256_HEX.match(value):
        raise ValueError("must be a 64-character SHA-256 hex digest (see `cascadeflow keys hash`)")
    return value


def is_redis(url: str) -> bool:
    """Whether a store URL names Redis."""
    return url.startswith(("redis://", "rediss://", "unix://"))


def resolve_auth(settings: Settings, base: Path, environ: Mapping[str, str]) -> AuthSettings:
    """The auth settings with the key store and the limiter's Redis chosen, and a relative SQLite path under
    `base` (the data directory)."""
    auth, log, cache = settings.auth, settings.outcome_log, settings.cache
    store = auth.store
    if store is None:
        if log.enabled and log.url.startswith(("postgresql://", "postgres://")):
            store = log.url
        elif settings.state.redis_url is not None:
            store = settings.state.redis_url
        elif settings.semantic_cache_wanted and cache.mode == "redis":
            store = cache.redis_url
        else:
            store = DEFAULT_STORE
    redis_url = auth.redis_url
    if redis_url is None and auth.limiter != "embedded":
        if is_redis(store):
            redis_url = store
        elif settings.semantic_cache_wanted and cache.mode == "redis":
            redis_url = cache.redis_url
    return auth.model_copy(update={"store": resolve_sqlite_url(store, base, environ), "redis_url": redis_url})
