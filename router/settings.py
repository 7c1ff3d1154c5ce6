"""Typed settings: one object, loaded from YAML with ${VAR} interpolation and CASCADEFLOW_* overrides."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.errors import ConfigError

ProviderKind = Literal["anthropic", "openai"]

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    """Where the proxy listens and how much it accepts."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ProviderSettings(_Strict):
    """One upstream LLM API."""

    kind: ProviderKind | None = None
    base_url: str
    api_key: SecretStr | None = None
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0)
    max_connections: int = Field(1024, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    forward_client_key: bool = True
    supports_responses: bool = True
    supports_logprobs: bool = False

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value


class ModelRoute(_Strict):
    """Which provider serves a model name (glob pattern), optionally under another upstream name."""

    match: str
    provider: str
    upstream_model: str | None = None


class CascadeRule(_Strict):
    """A requested model (or `cascade/<name>`): the draft model first, the strong (verifier) model on escalation."""

    request_model: str | None = None
    name: str | None = None
    draft_model: str
    verifier_model: str
    quality_threshold: float = Field(0.7, ge=0.0, le=1.0)
    draft_timeout_s: float = Field(120.0, gt=0)
    cache_threshold: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _named(self) -> CascadeRule:
        if self.request_model is None and self.name is None:
            raise ValueError("request_model or name is required")
        return self

    @property
    def strong_model(self) -> str:
        """The strong tier (configured as `verifier_model`)."""
        return self.verifier_model

    def matches(self, model: str) -> bool:
        """Whether a requested model selects this rule."""
        return model == self.request_model or (self.name is not None and model == f"cascade/{self.name}")


class EmbeddingSettings(_Strict):
    """The sentence encoder shared by the cache and the learned router."""

    enabled: bool = True
    max_batch: int = Field(32, ge=1, le=512)
    window_ms: float = Field(3.0, ge=0.0, le=100.0)
    max_chars: int = Field(2000, ge=64)
    threads: int = Field(2, ge=1, le=64)


class CacheSettings(_Strict):
    """The semantic cache: FAISS per scope in each process; `redis` mode shares entries across replicas."""

    enabled: bool = True
    mode: Literal["embedded", "redis"] = "embedded"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "cascadeflow:cache"
    directory: str | None = ".cache/semantic"
    similarity_threshold: float | None = Field(None, ge=0.0, le=1.0)
    ttl_s: float = Field(7 * 24 * 3600.0, gt=0)
    capacity: int = Field(100_000, ge=1)
    allow_sampled: bool = False


class OutcomeLogSettings(_Strict):
    """The outcome log: one record per request, for retraining the router and tuning its thresholds.

    `url` is `sqlite:///path` (embedded, the default) or `postgresql://...` (shared by replicas). Writes are
    batched off the request path through a bounded queue; prompts and answers are stored only when
    `store_text` is true (hashes otherwise).
    """

    enabled: bool = True
    url: str = "sqlite:///var/outcomes.sqlite"
    store_text: bool = False
    store_embeddings: bool = True
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(256, ge=1)
    flush_interval_ms: float = Field(200.0, ge=1.0)
    retention_days: float | None = Field(90.0, gt=0)
    max_rows: int | None = Field(1_000_000, ge=1)
    spool_path: str | None = "var/outcomes.spool.jsonl"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value


class LearnedRouterSettings(_Strict):
    """The learned router: a classifier of P(draft good enough) from the request alone.

    The newest valid artifact under `models_dir` is loaded at start-up and swapped in when a newer one
    appears (checked every `reload_interval_s`). Below `skip_threshold` (the artifact's own when unset)
    a request skips the draft and goes to the strong model.
    """

    enabled: bool = True
    models_dir: str = "models"
    artifact: str | None = None
    skip_threshold: float | None = Field(None, ge=0.0, le=1.0)
    reload_interval_s: float = Field(10.0, gt=0)
    required: bool = False


class LabelSettings(_Strict):
    """Labels for live traffic: whether the draft was good enough, judged when both answers exist.

    Escalated requests have both answers. A share of accepted drafts (`exploration_rate`) is also sent to
    the strong model in the background so labels are not limited to what the router already escalates.
    The judge is `agreement` (embedding similarity, exact or numeric match of the two answers) or `grader`
    (the strong model grades the draft against its own answer).
    """

    exploration_rate: float = Field(0.05, ge=0.0, le=1.0)
    judge: Literal["agreement", "grader"] = "agreement"
    agreement_similarity: float = Field(0.8, ge=0.0, le=1.0)
    grader_model: str | None = None
    max_concurrent: int = Field(4, ge=1)


class ProxyKey(_Strict):
    """A client key of the proxy, stored only as its SHA-256 hex digest."""

    key_sha256: str
    user: str = Field(min_length=1)

    @field_validator("key_sha256")
    @classmethod
    def _is_digest(cls, value: str) -> str:
        value = value.lower()
        if not _SHA256_HEX.match(value):
            raise ValueError("must be a 64-character SHA-256 hex digest (see `cascadeflow keys hash`)")
        return value


class AuthSettings(_Strict):
    """Client authentication: pass-through when no proxy keys are configured."""

    keys: list[ProxyKey] = Field(default_factory=list)


DEFAULT_PROVIDERS: dict[str, dict[str, str]] = {
    "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com",
                  "api_key": "${ANTHROPIC_API_KEY:-}"},
    "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "${OPENAI_API_KEY:-}"},
}
"""Built-in providers, used when the config names none; keys come from the environment."""


def _default_routes() -> list[ModelRoute]:
    return [
        ModelRoute(match="claude-*", provider="anthropic"),
        ModelRoute(match="gpt-*", provider="openai"),
        ModelRoute(match="chatgpt-*", provider="openai"),
        ModelRoute(match="o[0-9]*", provider="openai"),
    ]


class Settings(BaseSettings):
    """All configuration of one proxy process."""

    model_config = SettingsConfigDict(
        env_prefix="CASCADEFLOW_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: list[ModelRoute] = Field(default_factory=_default_routes)
    cascade_rules: list[CascadeRule] = Field(default_factory=list)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    outcome_log: OutcomeLogSettings = Field(default_factory=OutcomeLogSettings)
    learned_router: LearnedRouterSettings = Field(default_factory=LearnedRouterSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        for name, provider in self.providers.items():
            if provider.kind is None and name not in ("anthropic", "openai"):
                raise ValueError(f"providers.{name}.kind: required (anthropic or openai)")
        for index, route in enumerate(self.models):
            if route.provider not in self.providers:
                raise ValueError(f"models.{index}.provider: unknown provider {route.provider!r}")
        seen: set[str] = set()
        for index, rule in enumerate(self.cascade_rules):
            for key in (rule.request_model, f"cascade/{rule.name}" if rule.name else None):
                if key is not None and key in seen:
                    raise ValueError(f"cascade_rules.{index}: duplicate rule for {key!r}")
                if key is not None:
                    seen.add(key)
        return self

    def provider_kind(self, name: str) -> ProviderKind:
        """The dialect family of a provider (its name when kind is omitted)."""
        provider = self.providers[name]
        if provider.kind is not None:
            return provider.kind
        return "anthropic" if name == "anthropic" else "openai"


_PLACEHOLDER = re.compile(r"__cfenv(\d+)__")


def interpolate(value: Any, environ: Mapping[str, str], path: str = "",
                references: list[re.Match[str]] | None = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} (or their placeholders) in every string of a decoded YAML tree."""
    if isinstance(value, dict):
        return {
            key: interpolate(item, environ, f"{path}.{key}" if path else str(key), references)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [interpolate(item, environ, f"{path}.{index}", references) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (use ${{{name}:-}} for optional)")

    if references is not None:
        return _PLACEHOLDER.sub(lambda m: resolve(references[int(m.group(1))]), value)
    return _INTERPOLATION.sub(resolve, value)


def _parse_yaml(text: str, environ: Mapping[str, str], source: str) -> dict[str, Any]:
    """Parse YAML whose ${VAR} references may stand anywhere, even unquoted inside flow mappings."""
    references: list[re.Match[str]] = []

    def hide(match: re.Match[str]) -> str:
        references.append(match)
        return f"__cfenv{len(references) - 1}__"

    try:
        raw = yaml.safe_load(_INTERPOLATION.sub(hide, text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    result: dict[str, Any] = interpolate(raw, environ, "", references)
    return result


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{location}: {item['msg']}")
    return "; ".join(lines)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Load settings from a YAML file (or built-in defaults), raising ConfigError with the key path."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        data = _parse_yaml(text, env, str(path))
    if not data.get("providers"):
        data["providers"] = interpolate(DEFAULT_PROVIDERS, env, "providers")
    for section, values in overrides.items():
        merged = dict(data.get(section) or {})
        merged.update({key: value for key, value in values.items() if value is not None})
        data[section] = merged
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from exc


def config_path_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The config file named by CASCADEFLOW_CONFIG (set by `cascadeflow proxy start --config`)."""
    env = os.environ if environ is None else environ
    return env.get("CASCADEFLOW_CONFIG") or None
