"""Live configuration: the config file applied to a running proxy when it changes, on SIGHUP, or on
`POST /admin/config/reload`; validated first, and a file that does not validate changes nothing.

Only the settings in `RELOADABLE` take effect at once: the cascade rules (models, thresholds, cache and verify
options), the model routing table, `model_info` (prices, from the next request's cost on, for the ledger and the
budgets alike; limits and log-prob support, for new drafts, labels and the budgets' worst-case estimates),
`labels` (exploration, judge, grader, background keys), the verifier's and the learned router's thresholds, the
cache's similarity threshold and sampling rule, and logging. Everything else (the listen address and workers,
providers and their keys and timeouts, auth, storage, the encoder, artifacts, tracing) is held by objects built
once at start-up; a change there is logged as waiting for a restart and shown by `GET /admin/config`. A request
in flight keeps the settings it started with (and the budget hold it was admitted with).

With several workers each polls the file itself; SIGHUP to the uvicorn supervisor restarts the workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from router.catalog import ModelCatalog
from router.config_errors import ConfigFileError, validation_issues
from router.errors import ConfigError
from router.ledger import metric_models
from router.observability.logs import reconfigure_logging
from router.observability.settings import ReloadSettings
from router.settings import Settings, load_settings

if TYPE_CHECKING:
    from router.metrics import Metrics
    from router.services import Services

logger = logging.getLogger("router.reload")

RELOADABLE: tuple[str, ...] = (
    "cascade_rules", "models", "model_info", "labels", "verifier.accept_threshold", "learned_router.skip_threshold",
    "cache.similarity_threshold", "cache.allow_sampled", "logging")
"""Key paths a running proxy applies from a reloaded file; a change anywhere else waits for a restart."""
_SETTLE_S = 0.2


@dataclass(frozen=True)
class ConfigSource:
    """Where the running settings came from: the file, and the command line's overrides (applied again)."""

    path: str
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def load(self) -> Settings:
        """The file's settings, validated (raises ConfigError naming the file, line and key path)."""
        return load_settings(self.path, **self.overrides)

    def stamp(self) -> tuple[int, int, int] | None:
        """What changes when the file does: its mtime, size and inode (None while it cannot be read)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino


@dataclass(frozen=True)
class ReloadResult:
    """One reload: applied, unchanged (nothing reloadable changed) or rejected (the running config kept)."""

    status: Literal["applied", "unchanged", "rejected"]
    trigger: str
    applied: tuple[str, ...] = ()
    """Changed key paths now in effect."""
    ignored: tuple[str, ...] = ()
    """Changed key paths that wait for a restart."""
    notes: tuple[str, ...] = ()
    error: str | None = None
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON (for /admin/config)."""
        return {"status": self.status, "trigger": self.trigger, "applied": list(self.applied),
                "ignored": list(self.ignored), "notes": list(self.notes), "error": self.error, "at": self.at}


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a settings dump by its dotted key path (an empty mapping or list is a leaf)."""
    items: list[tuple[Any, Any]] = list(value.items()) if isinstance(value, dict) else (
        list(enumerate(value)) if isinstance(value, list | tuple) else [])
    if not items:
        return {prefix: value}
    leaves: dict[str, Any] = {}
    for key, item in items:
        leaves.update(_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def changed_paths(old: Settings, new: Settings) -> list[str]:
    """The key paths whose values differ (secrets compared, never shown)."""
    before, after = _leaves(old.model_dump()), _leaves(new.model_dump())
    missing = object()
    return sorted(path for path in before.keys() | after.keys()
                  if before.get(path, missing) != after.get(path, missing))


def is_reloadable(path: str) -> bool:
    """Whether a changed key path takes effect without a restart."""
    return any(path == key or path.startswith(key + ".") for key in RELOADABLE)


def effective_settings(running: Settings, loaded: Settings) -> Settings:
    """The running settings with the reloadable ones taken from the file, validated as a whole (a rule may not
    name a provider that only a restart would add)."""
    data, fresh = running.model_dump(), loaded.model_dump()
    for key in RELOADABLE:
        *parents, last = key.split(".")
        target, source = data, fresh
        for part in parents:
            target, source = target[part], source[part]
        target[last] = source[last]
    try:
        return Settings(**data)
    except ValidationError as exc:
        error = ConfigFileError(validation_issues(exc, Settings),
                                note=" (with the running providers, server, auth and storage: a restart applies them)")
        raise error from exc


def partial_effects(services: Services, settings: Settings) -> list[str]:
    """What of a valid reload cannot take effect until a restart, because the part was not built at start."""
    notes = []
    if settings.semantic_cache_wanted and services.cache_step is None:
        notes.append("the semantic cache was not started (no rule wanted it): it starts at a restart")
    if settings.cascade_rules and settings.verifier.enabled and services.verifier is None:
        notes.append("the trained verifier was not started (no cascade rules at start): drafts are judged by the "
                     "hand-weighted score until a restart")
    if settings.cascade_rules and settings.learned_router.enabled and services.learned is None \
            and services.encoder is not None:
        notes.append("the learned router was not started (no cascade rules at start): it starts at a restart")
    return notes


def apply(services: Services, settings: Settings) -> None:
    """Put reloaded settings in force (synchronously: a request sees the old or the new settings, never a mix)."""
    services.pipeline.reconfigure(settings.cascade_rules, settings.model_info,
                                  spend_client_keys=settings.labels.spend_client_keys)
    services.registry.reconfigure(settings.models)
    services.catalog = ModelCatalog(settings, services.registry)
    if services.ledger is not None:
        services.ledger.prices.reconfigure(settings.model_info)  # the ledger's and the budgets' one price book
        services.ledger.reconfigure(metric_models(settings))
    if services.authenticator.budgets is not None:
        services.authenticator.budgets.reconfigure(settings.cascade_rules, settings.model_info)
    labeler = services.recorder.labeler if services.recorder is not None else None
    if labeler is not None:
        labeler.reconfigure(settings.labels, settings.model_info)
    if services.cache_step is not None:
        services.cache_step.reconfigure(settings.cache)
    if services.verifier is not None:
        services.verifier.reconfigure(settings.verifier)
    if services.learned is not None:
        services.learned.reconfigure(settings.learned_router)
    services.settings = settings
    reconfigure_logging(settings.logging, settings.server.log_level)


class ConfigReloader:
    """Reloads the config file into running services: on change (polled), on SIGHUP, or when asked."""

    def __init__(self, source: ConfigSource, services: Services, settings: ReloadSettings,
                 metrics: Metrics | None = None) -> None:
        self.source = source
        self._services = services
        self._settings = settings
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[ReloadResult]] = set()
        self._signal: int | None = None
        self.last: ReloadResult | None = None

    async def reload(self, trigger: str) -> ReloadResult:
        """Load, validate and apply the file now; the result is logged and kept for /admin/config."""
        async with self._lock:
            result = await self._reload(trigger)
            self.last = result
        if self._metrics is not None:
            self._metrics.inc("cascadeflow_config_reloads_total", result=result.status)
        _log(result, self.source.path)
        return result

    async def _reload(self, trigger: str) -> ReloadResult:
        running = self._services.settings
        try:
            loaded = await asyncio.to_thread(self.source.load)
            changed = changed_paths(running, loaded)
            applied = tuple(path for path in changed if is_reloadable(path))
            ignored = tuple(path for path in changed if not is_reloadable(path))
            if not applied:
                return ReloadResult("unchanged", trigger, ignored=ignored)
            effective = effective_settings(running, loaded)
        except ConfigError as exc:
            return ReloadResult("rejected", trigger, error=str(exc))
        notes = tuple(partial_effects(self._services, effective))
        apply(self._services, effective)
        return ReloadResult("applied", trigger, applied, ignored, notes)

    def start(self) -> None:
        """Watch the file (when `reload.watch`) and reload on SIGHUP (when this is the main thread)."""
        if self._settings.watch:
            self._watcher = asyncio.create_task(self._watch(), name="config-watch")
        hangup = getattr(signal, "SIGHUP", None)
        if hangup is None:
            return
        try:
            asyncio.get_running_loop().add_signal_handler(hangup, self._on_signal)
            self._signal = hangup
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (an embedded server)
            logger.debug("SIGHUP reload not installed: not in the main thread")

    def _on_signal(self) -> None:
        task = asyncio.create_task(self.reload("SIGHUP"))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _watch(self) -> None:
        last = self.source.stamp()
        while True:
            await asyncio.sleep(self._settings.interval_s)
            stamp = self.source.stamp()
            if stamp == last or stamp is None:
                continue
            await asyncio.sleep(min(_SETTLE_S, self._settings.interval_s))  # let a writer finish the file
            if self.source.stamp() != stamp:
                continue
            last = stamp
            try:
                await self.reload("file changed")
            except Exception:  # a reload that breaks must not end the watching
                logger.exception("reloading %s failed", self.source.path)

    async def stop(self) -> None:
        """Stop watching and listening for SIGHUP."""
        if self._signal is not None:
            asyncio.get_running_loop().remove_signal_handler(self._signal)
            self._signal = None
        tasks = [task for task in (self._watcher, *self._pending) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watcher = None

    def status(self) -> dict[str, Any]:
        """For /admin/config: the file, how it is watched, and the last reload."""
        return {"enabled": True, "file": self.source.path, "watch": self._settings.watch,
                "interval_s": self._settings.interval_s, "sighup": self._signal is not None,
                "reloadable": list(RELOADABLE), "last": self.last.as_dict() if self.last is not None else None}


def _log(result: ReloadResult, path: str) -> None:
    fields = {"event": "config_reload", **result.as_dict()}
    if result.status == "rejected":
        logger.error("config file %s rejected (%s); the running config is kept: %s", path, result.trigger,
                     result.error, extra={"fields": fields})
        return
    if result.applied:
        logger.info("config reloaded from %s (%s): %s", path, result.trigger, ", ".join(result.applied),
                    extra={"fields": fields})
    if result.ignored:
        logger.warning("config file %s changes settings that need a restart; not applied: %s", path,
                       ", ".join(result.ignored), extra={"fields": fields})
    for note in result.notes:
        logger.warning("config reload: %s", note)
