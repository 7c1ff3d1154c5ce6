"""The top-level names an operator writes for what replicas share, and the one place they are mapped onto the
nested settings that use them.

    tiers, users      the same settings as `auth.tiers`, `auth.users` (give one spelling: both is an error)
    state.redis_url   the default Redis of the rate limiter and the budgets (`auth.redis_url`), of the semantic
                      cache (`cache.redis_url`, and `cache.mode: redis`), and of the key store when no database
                      is named (router/auth_settings.py, `resolve_auth`)
    database.url      the default PostgreSQL of the key store (`auth.store`), the spend ledger (`spend.url`) and
                      the outcome log (`outcome_log.url`)

Precedence, for each nested setting: its own value when the config (or a CASCADEFLOW_* variable, or a flag)
gives one, else the top-level name's, else its older fallbacks. `state` switches nothing on: the semantic cache
stays opt-in (`cache.enabled`, or a rule's `semantic_cache`) and, once on, is shared through Redis unless
`cache.mode: embedded` says otherwise. The loaded settings keep tiers and users in both places (the
authenticator reads `auth`), and dump them once, at the top (`without_nested_spellings`), so a dump validates
again (live reloads rebuild the settings from one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from router.auth_settings import LimitSettings, TierSettings

FailurePolicy = Literal["open", "closed"]
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
MIRRORED = ("tiers", "users")
"""Top-level names that are the same settings as `auth.<name>`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateSettings(_Strict):
    """The Redis every replica shares (rate limits, budgets, the semantic cache; keys when there is no database),
    and what a request meets when it stops answering."""

    redis_url: str | None = None
    """The default Redis of `auth.redis_url` and `cache.redis_url` (each wins when given)."""
    on_failure: FailurePolicy = "open"
    """While the shared state cannot be read (Redis down or stalled, the key store unreadable): open serves on,
    each replica counting rate limits and budgets on its own and keeping its last view of the key store; closed
    answers 503 in the client's dialect, naming what is down, to every request that would need it (a key with
    limits or budgets, a key from the key store). Both log the outage once, count it in
    `cascadeflow_dependency_errors_total` and show it in /ready as degraded. The semantic cache is always open."""
    timeout_s: float = Field(0.5, gt=0.0, le=5.0)
    """The longest one Redis call on a request's path may take, connecting included; after a failure Redis is
    not waited on again until a background probe finds it back."""

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(REDIS_SCHEMES):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class DatabaseSettings(_Strict):
    """The PostgreSQL every replica shares: keys made at run time, the spend ledger, the outcome log."""

    url: str | None = None
    """The default of `auth.store`, `spend.url` and `outcome_log.url` (each wins when given)."""

    @field_validator("url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(POSTGRES_SCHEMES):
            raise ValueError("must start with postgresql://")
        return value


def _given(section: Any, key: str) -> Any:
    """What a raw section gives for a key (None when it gives nothing): a mapping's value, or a model's own."""
    if isinstance(section, Mapping):
        return section.get(key)
    if isinstance(section, BaseModel) and key in section.model_fields_set:
        return getattr(section, key)
    return None


def _default(data: dict[str, Any], section: str, key: str, value: Any) -> None:
    """Set `section.key` to value unless the config gives it (a section that is not a mapping is left for
    validation to report)."""
    current = data.get(section)
    if _given(current, key) is not None:
        return
    if current is None and section not in data:
        data[section] = {key: value}
    elif isinstance(current, Mapping):
        data[section] = {**current, key: value}
    elif isinstance(current, BaseModel):
        data[section] = current.model_copy(update={key: value})


def _copy(name: str, value: Any) -> Any:
    """Tiers or users for the other spelling: validated, or (when invalid) their names alone, so the error is
    reported once, where the config wrote it, and the tier names still exist for the keys that name them."""
    annotation = dict[str, TierSettings] if name == "tiers" else dict[str, LimitSettings]
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return {key: {} for key in value} if isinstance(value, Mapping) else None


def resolve_shared_names(data: dict[str, Any]) -> dict[str, Any]:
    """The raw settings with `tiers`, `users`, `state` and `database` mapped onto the nested settings (see the
    module docstring); raises ValueError naming both paths when tiers or users are given in both places."""
    data = dict(data)
    for name in MIRRORED:
        top, nested = data.get(name), _given(data.get("auth"), name)
        if top and nested:
            raise ValueError(f"{name} and auth.{name}: the same setting given twice; keep `{name}` "
                             f"(auth.{name} is its older spelling)")
        if top and (copied := _copy(name, top)) is not None:
            _default(data, "auth", name, copied)
        elif nested and (copied := _copy(name, nested)) is not None:
            data[name] = copied
    database = _given(data.get("database"), "url")
    if isinstance(database, str) and database.startswith(POSTGRES_SCHEMES):
        for section, key in (("auth", "store"), ("spend", "url"), ("outcome_log", "url")):
            _default(data, section, key, database)
    redis = _given(data.get("state"), "redis_url")
    if isinstance(redis, str) and redis.startswith(REDIS_SCHEMES):
        for section, key, value in (("auth", "redis_url", redis), ("cache", "redis_url", redis),
                                    ("cache", "mode", "redis")):
            _default(data, section, key, value)
    return data


def without_nested_spellings(dumped: Any) -> Any:
    """A settings dump with tiers and users at the top only (the loaded settings hold them in both places)."""
    auth = dumped.get("auth") if isinstance(dumped, dict) else None
    if isinstance(auth, dict):
        dumped["auth"] = {key: value for key, value in auth.items() if key not in MIRRORED}
    return dumped
