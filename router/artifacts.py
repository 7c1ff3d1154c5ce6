"""A trained artifact in service (the learned router's or the verifier's): loaded, refused, hot-reloaded.

Loading is CPU and disk work (joblib): it runs in a thread, never on the event loop. A mismatched or corrupt
artifact is refused with a message naming what differs; the server keeps the artifact it has (or none) and
reports the refusal in /ready and the metrics. With `required` a refusal at start-up stops the server instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from router.assets import models_dir_of
from router.errors import ConfigError
from router.learning_settings import LearnedRouterSettings, VerifierSettings
from router.metrics import Metrics
from router.policy.classifier import (
    ArtifactMetadata,
    ArtifactMismatch,
    RouterArtifact,
    check_metadata,
    latest_artifact_dir,
    load_artifact,
    read_metadata,
)

logger = logging.getLogger("router.artifacts")


def single_threaded_math() -> None:
    """A few rows at a time, a math library's thread team costs more than it saves and competes with the encoder's
    threads: OpenMP's took a router prediction from 10 to 31 ms on two cores, and OpenBLAS's the k-NN vote's product
    with the training vectors from 0.8 to 16 ms under load. A worker thread's initializer (OpenBLAS's limit is the
    process's)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="openmp")
    threadpool_limits(1, user_api="blas")


@dataclass(frozen=True)
class ArtifactSpec:
    """What kind of artifact is served and what this code expects of it."""

    kind: str  # "router" or "verifier": the directory prefix, the metric names, the log's words
    section: str  # the settings section, for messages
    features_version: str
    feature_names: tuple[str, ...]
    embedding_model: str
    embedding_dimension: int


@dataclass(frozen=True)
class ArtifactSource:
    """Where the artifact comes from and how it is watched."""

    models_dir: Path
    artifact: str | None
    required: bool
    reload_interval_s: float

    @classmethod
    def of(cls, settings: LearnedRouterSettings | VerifierSettings) -> ArtifactSource:
        """The source a settings section names (`models_dir` None: the shipped models)."""
        return cls(models_dir_of(settings.models_dir), settings.artifact, settings.required,
                   settings.reload_interval_s)


def candidate_dir(spec: ArtifactSpec, source: ArtifactSource) -> Path | None:
    """The configured artifact directory, else the newest valid one of this kind under `models_dir`."""
    if source.artifact:
        return Path(source.artifact)
    return latest_artifact_dir(source.models_dir, f"{spec.kind}-")


def checked_metadata(spec: ArtifactSpec, directory: Path) -> ArtifactMetadata:
    """An artifact's metadata, checked against what this code expects (nothing unpickled); ArtifactMismatch
    naming every difference."""
    metadata = read_metadata(directory)
    check_metadata(metadata, expected_dimension=spec.embedding_dimension,
                   expected_features_version=spec.features_version, expected_embedding_model=spec.embedding_model,
                   expected_feature_names=spec.feature_names)
    return metadata


class ArtifactWatcher:
    """Holds the current artifact and swaps in a newer one when it appears under `models_dir`."""

    def __init__(self, spec: ArtifactSpec, source: ArtifactSource, metrics: Metrics,
                 describe: Callable[[RouterArtifact], str] = lambda _: "") -> None:
        self._spec = spec
        self._source = source
        self._metrics = metrics
        self._describe = describe
        self._artifact: RouterArtifact | None = None
        self._stamp: tuple[str, str] | None = None
        self.refused: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def artifact(self) -> RouterArtifact | None:
        """The artifact in use, if any."""
        return self._artifact

    def _candidate(self) -> Path | None:
        return candidate_dir(self._spec, self._source)

    def _load(self, directory: Path) -> RouterArtifact:
        spec = self._spec
        return load_artifact(directory, expected_dimension=spec.embedding_dimension,
                             expected_features_version=spec.features_version,
                             expected_embedding_model=spec.embedding_model, expected_feature_names=spec.feature_names)

    def _refuse(self, directory: Path, error: ArtifactMismatch) -> None:
        key = str(directory)
        if self.refused.get(key) != str(error):
            logger.error("refusing %s artifact: %s", self._spec.kind, error)
            self._metrics.inc(f"cascadeflow_{self._spec.kind}_artifact_refusals_total")
        self.refused[key] = str(error)

    def _use(self, artifact: RouterArtifact) -> None:
        self._artifact = artifact
        self._stamp = (artifact.metadata.created_at, artifact.metadata.version)
        self.refused.clear()
        logger.info("%s artifact %s in use%s", self._spec.kind, artifact.metadata.version, self._describe(artifact))
        self._metrics.inc(f"cascadeflow_{self._spec.kind}_artifact_loads_total")

    def load_now(self) -> None:
        """Load the configured or newest artifact (blocking; at start-up, in a thread)."""
        spec, source = self._spec, self._source
        directory = self._candidate()
        if directory is None:
            if source.required:
                raise ConfigError(f"{spec.section}: no {spec.kind} artifact under {source.models_dir} "
                                  "(required: true); train one with `cascadeflow train`")
            logger.warning("no %s artifact under %s", spec.kind, source.models_dir)
            return
        try:
            self._use(self._load(directory))
        except ArtifactMismatch as exc:
            self._refuse(directory, exc)
            if source.required:
                raise ConfigError(f"{spec.section}: {exc}") from exc

    def reload_if_newer(self) -> bool:
        """Swap in a newer artifact if one appeared (blocking: call in a thread). True when swapped."""
        directory = self._candidate()
        if directory is None:
            return False
        try:
            metadata = read_metadata(directory)
        except ArtifactMismatch as exc:
            self._refuse(directory, exc)
            return False
        stamp = (metadata.created_at, metadata.version)
        if stamp == self._stamp or str(directory) in self.refused:
            return False
        try:
            artifact = self._load(directory)
        except ArtifactMismatch as exc:
            self._refuse(directory, exc)
            return False
        self._use(artifact)
        return True

    async def start(self) -> None:
        """Load the artifact and watch for newer ones."""
        await asyncio.to_thread(self.load_now)
        self._task = asyncio.create_task(self._watch(), name=f"{self._spec.kind}-artifact-watch")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._source.reload_interval_s)
            try:
                await asyncio.to_thread(self.reload_if_newer)
            except Exception:  # a watch failure must never stop the watcher
                logger.exception("checking for a new %s artifact failed", self._spec.kind)

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
