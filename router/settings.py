"""Typed settings: one object, loaded from YAML with ${VAR} interpolation and CASCADEFLOW_* overrides."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from router.auth_settings import AuthSettings as AuthSettings
from router.auth_settings import LimitSettings, TierSettings, resolve_auth
from router.auth_settings import ProxyKey as ProxyKey
from router.config_errors import ConfigFileError, leaf_paths, validation_issues
from router.config_sources import deep_merge, env_overrides, in_file, interpolate, read_config, setting_variables
from router.learning_settings import (
    DraftVerification,
    LabelSettings,
    LearnedRouterSettings,
    OutcomeLogSettings,
    VerifierSettings,
)
from router.model_settings import ModelInfo
from router.observability.settings import LoggingSettings, ReloadSettings, TracingSettings
from router.paths import resolve_path, resolve_sqlite_url, state_base
from router.resilience_settings import BreakerSettings, ResilienceSettings, RetrySettings
from router.server_settings import ServerSettings as ServerSettings
from router.server_settings import is_loopback as is_loopback
from router.shared_state import DatabaseSettings, StateSettings, resolve_shared_names, without_nested_spellings
from router.spend.settings import SpendSettings, resolve_spend

ProviderKind = Literal["anthropic", "openai"]

CONFIG_VARIABLE = "CASCADEFLOW_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSettings(_Strict):
    """One upstream LLM API."""

    kind: ProviderKind | None = None
    base_url: str
    api_key: SecretStr | None = None
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0)
    """The longest silence while an answer is read."""
    first_byte_timeout_s: float = Field(300.0, gt=0)
    """A streamed answer's status, headers and first bytes must arrive within this."""
    total_timeout_s: float | None = Field(1800.0, gt=0)
    """A whole call, its answer's last byte included (None: no limit)."""
    retry: RetrySettings | None = None
    """This provider's retries (None: `resilience.retry`)."""
    breaker: BreakerSettings | None = None
    """This provider's circuit breaker (None: `resilience.breaker`)."""
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
    fallback_models: list[str] = Field(default_factory=list)
    """Tried in order when this route's provider fails (after retries, or with its circuit open)."""


class CascadeRule(_Strict):
    """A requested model (or `cascade/<name>`): the draft model first, the strong (verifier) model on escalation."""

    request_model: str | None = None
    name: str | None = None
    draft_model: str
    verifier_model: str
    fallback_models: list[str] = Field(default_factory=list)
    """Tried in order when the strong model fails (after retries, or with its circuit open); the model route's
    `fallback_models` when empty."""
    quality_threshold: float = Field(0.7, ge=0.0, le=1.0)
    draft_timeout_s: float = Field(120.0, gt=0)
    semantic_cache: bool | None = None
    """The semantic cache on or off for this rule (None: as `cache.enabled`)."""
    semantic_threshold: float | None = Field(None, ge=0.0, le=1.0)
    """This rule's cache similarity threshold (None: `cache.similarity_threshold`); was `cache_threshold`."""
    cache_sampled: bool | None = None
    verify: DraftVerification = Field(default_factory=DraftVerification)
    """Let this rule's cache answer requests sampled at temperature > 0 or unset (None: `cache.allow_sampled`)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed_cache_threshold(cls, data: Any) -> Any:
        """Accept the deprecated `cache_threshold` as `semantic_threshold`."""
        if not isinstance(data, dict) or "cache_threshold" not in data:
            return data
        data = dict(data)
        old = data.pop("cache_threshold")
        if data.get("semantic_threshold") not in (None, old):
            raise ValueError("cache_threshold: the deprecated name of semantic_threshold; give only semantic_threshold")
        data["semantic_threshold"] = old
        return data

    @property
    def cache_threshold(self) -> float | None:
        """Deprecated: `semantic_threshold`."""
        return self.semantic_threshold

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
    window_ms: float = Field(0.0, ge=0.0, le=100.0)
    """Extra wait for company before a batch starts; 0: a batch starts when the encoder is free."""
    max_chars: int = Field(2000, ge=64)
    threads: int = Field(1, ge=1, le=64)
    """Threads of one embedding call; one is cheapest per request, batching gives the throughput."""


class CacheSettings(_Strict):
    """The semantic cache (opt-in): FAISS per scope in each process; `redis` mode shares entries across replicas."""

    enabled: bool = False
    """Off by default; a cascade rule's `semantic_cache: true` turns it on for that rule alone."""
    mode: Literal["embedded", "redis"] = "embedded"
    """redis: entries shared by replicas (the default when `state.redis_url` is set; it does not turn the cache on)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Unset: `state.redis_url`, else this default."""
    redis_prefix: str = "cascadeflow:cache"
    directory: str | None = ".cache/semantic"
    similarity_threshold: float | None = Field(None, ge=0.0, le=1.0)
    ttl_s: float = Field(7 * 24 * 3600.0, gt=0)
    capacity: int = Field(100_000, ge=1)
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    """What the entries may hold in memory (answers, vectors, index): past it, the oldest are evicted."""
    allow_sampled: bool = False


DEFAULT_PROVIDERS: dict[str, dict[str, str]] = {
    "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com",
                  "api_key": "${ANTHROPIC_API_KEY:-}"},
    "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "${OPENAI_API_KEY:-}"},
}
"""Built-in providers, used when the config names none; keys come from the environment."""


DEFAULT_ROUTES: tuple[tuple[str, str], ...] = (
    ("claude-*", "anthropic"), ("gpt-*", "openai"), ("chatgpt-*", "openai"), ("o[0-9]*", "openai"))
"""Built-in model routes (pattern, provider), used when the config gives none: those of configured providers."""


class Settings(BaseSettings):
    """All configuration of one proxy process (built directly: the given values only; see `load_settings`)."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    data_dir: str | None = None
    """The base of relative state paths (cache, outcome log, spool, artifacts); `load_settings` sets the one used."""
    server: ServerSettings = Field(default_factory=ServerSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: list[ModelRoute] = Field(default_factory=list)
    cascade_rules: list[CascadeRule] = Field(default_factory=list)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tiers: dict[str, TierSettings] = Field(default_factory=dict)
    """Rate limits and budgets per tier (`auth.tiers` is the same setting: give one); see router/shared_state.py."""
    users: dict[str, LimitSettings] = Field(default_factory=dict)
    """Per user: overrides of the tier's limits and budgets (`auth.users` is the same setting: give one)."""
    state: StateSettings = Field(default_factory=StateSettings)
    """The Redis replicas share, and what requests meet while it is down; a nested Redis URL given wins over it."""
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    """The PostgreSQL replicas share; `auth.store`, `spend.url` or `outcome_log.url` given wins over it."""
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    outcome_log: OutcomeLogSettings = Field(default_factory=OutcomeLogSettings)
    spend: SpendSettings = Field(default_factory=SpendSettings)
    learned_router: LearnedRouterSettings = Field(default_factory=LearnedRouterSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    verifier: VerifierSettings = Field(default_factory=VerifierSettings)
    model_info: dict[str, ModelInfo] = Field(default_factory=dict)
    """Per model name or glob (as the provider knows it): context, output limit, log-probs, prices."""
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    reload: ReloadSettings = Field(default_factory=ReloadSettings)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the given values: `load_settings` applies the environment it is given (os.environ by default)."""
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _shared_names(cls, data: Any) -> Any:
        """`tiers`, `users`, `state` and `database` onto the nested settings they default (router/shared_state.py)."""
        return resolve_shared_names(data) if isinstance(data, dict) else data

    @model_serializer(mode="wrap")
    def _dumped_once(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Tiers and users dumped at the top only, so a dump validates again (reloads rebuild settings from one)."""
        return without_nested_spellings(handler(self))

    @model_validator(mode="before")
    @classmethod
    def _default_routes(cls, data: Any) -> Any:
        """Without `models`, the built-in routes of the providers that are configured."""
        if isinstance(data, dict) and data.get("models") is None:
            configured = data.get("providers") or {}
            routes = [{"match": match, "provider": name} for match, name in DEFAULT_ROUTES if name in configured]
            return {**data, "models": routes}
        return data

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        for name, provider in self.providers.items():
            if provider.kind is None and name not in ("anthropic", "openai"):
                raise ValueError(f"providers.{name}.kind: required (anthropic or openai)")
        for index, route in enumerate(self.models):
            if route.provider not in self.providers:
                raise ValueError(f"models.{index}.provider: unknown provider {route.provider!r}")
        self._check_model_references()
        opened = self.auth.mode == "open" or self.server.open_without_keys
        if not self.auth.requires_keys and not opened and not is_loopback(self.server.host):
            raise ValueError(f"server.host: {self.server.host!r} is not loopback and no proxy keys are configured, "
                             "so anyone who reaches the port would spend the provider keys; add auth.keys (or "
                             "auth.mode: api_key), listen on 127.0.0.1, or say so with auth.mode: open")
        seen: set[str] = set()
        for index, rule in enumerate(self.cascade_rules):
            for key in (rule.request_model, f"cascade/{rule.name}" if rule.name else None):
                if key is not None and key in seen:
                    raise ValueError(f"cascade_rules.{index}: duplicate rule for {key!r}")
                if key is not None:
                    seen.add(key)
        return self

    def _check_model_references(self) -> None:
        """A `provider/model` name must name a configured provider, unless a model route matches the whole name."""
        references = [("labels.grader_model", self.labels.grader_model or "")] + [
            (f"cascade_rules.{index}.{field}", getattr(rule, field))
            for index, rule in enumerate(self.cascade_rules) for field in ("draft_model", "verifier_model")] + [
            (f"{section}.{index}.fallback_models.{number}", model)
            for section, lists in (("cascade_rules", [r.fallback_models for r in self.cascade_rules]),
                                   ("models", [r.fallback_models for r in self.models]))
            for index, fallbacks in enumerate(lists) for number, model in enumerate(fallbacks)]
        for key, model in references:
            prefix, slash, _ = model.partition("/")
            if slash and prefix not in self.providers and not any(
                    fnmatch.fnmatchcase(model, route.match) for route in self.models):
                configured = ", ".join(sorted(self.providers)) or "none"
                raise ValueError(f"{key}: unknown provider {prefix!r} (configured: {configured})")

    @property
    def semantic_cache_wanted(self) -> bool:
        """Whether any request may use the semantic cache (`cache.enabled`, or a rule's `semantic_cache: true`)."""
        return self.cache.enabled or any(rule.semantic_cache for rule in self.cascade_rules)

    def provider_kind(self, name: str) -> ProviderKind:
        """The dialect family of a provider (its name when kind is omitted)."""
        provider = self.providers[name]
        if provider.kind is not None:
            return provider.kind
        return "anthropic" if name == "anthropic" else "openai"


def _with_state_paths(settings: Settings, base: Path, environ: Mapping[str, str]) -> Settings:
    """The settings with every relative state path (and sqlite URL) taken under `base`."""

    def local(value: str | None) -> str | None:
        return None if value is None else resolve_path(value, base, environ)

    cache, log, learned, verifier = settings.cache, settings.outcome_log, settings.learned_router, settings.verifier
    return settings.model_copy(update={
        "data_dir": str(base),
        "auth": resolve_auth(settings, base, environ),
        "spend": resolve_spend(settings, base, environ),
        "cache": cache.model_copy(update={"directory": local(cache.directory)}),
        "outcome_log": log.model_copy(update={"url": resolve_sqlite_url(log.url, base, environ),
                                              "spool_path": local(log.spool_path),
                                              "journal_path": local(log.journal_path or log.default_journal_path())}),
        "learned_router": learned.model_copy(update={"models_dir": local(learned.models_dir),
                                                     "artifact": local(learned.artifact)}),
        "verifier": verifier.model_copy(update={"models_dir": local(verifier.models_dir),
                                                "artifact": local(verifier.artifact)}),
    })


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Settings from a YAML file (or defaults) under CASCADEFLOW_* variables and `overrides`, paths resolved."""
    # precedence: `overrides` (sections of values, e.g. CLI flags; None skipped) > the CASCADEFLOW_* variables of
    # `environ` (os.environ when None) > the file. Relative state paths: see router.paths.state_base.
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    text: str | None = None
    if path is not None:
        text, data = read_config(path, env)
    if not data.get("providers"):
        data["providers"] = interpolate(DEFAULT_PROVIDERS, env, "providers")
    from_environment = env_overrides(env, Settings.model_fields)
    data = deep_merge(data, from_environment)
    for section, values in overrides.items():
        data = deep_merge(data, {section: {key: value for key, value in values.items() if value is not None}})
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        named = setting_variables(env, Settings.model_fields)
        note = f" (CASCADEFLOW_* variables set: {', '.join(named)})" if named else ""
        error = ConfigFileError(validation_issues(exc, Settings), note=note)
        elsewhere = leaf_paths(from_environment) + leaf_paths(overrides)  # set by a variable or a flag
        raise in_file(error, None if path is None else str(path), text, elsewhere) from exc
    return _with_state_paths(settings, state_base(path, settings.data_dir, env), env)


def config_path_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The config file named by CASCADEFLOW_CONFIG (set by `cascadeflow proxy start --config`)."""
    env = os.environ if environ is None else environ
    return env.get(CONFIG_VARIABLE) or None
