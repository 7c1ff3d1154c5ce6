"""The learned router at serving time: the loaded artifact, its predictions, and hot reload from `models/`.

Loading and predicting are CPU work (joblib, scikit-learn): they run in a thread, never on the event loop. A
mismatched or corrupt artifact is refused with a message naming what differs; the server keeps the artifact it
has (or none) and reports the refusal in /ready and the metrics. With `required: true` a refusal at start-up
stops the server instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from router.assets import models_dir_of
from router.errors import ConfigError
from router.metrics import Metrics
from router.policy.classifier import (
    ArtifactMismatch,
    RouterArtifact,
    latest_artifact_dir,
    load_artifact,
    read_metadata,
)
from router.policy.features import FEATURES_VERSION, structural_vector
from router.settings import LearnedRouterSettings
from router.types import JSONObject

logger = logging.getLogger("router.learned")


@dataclass(frozen=True)
class Prediction:
    """What the learned router said about one request, before any answer."""

    p_good: float
    skip_threshold: float | None
    artifact_version: str
    structural: tuple[float, ...]

    @property
    def skip(self) -> bool:
        """Whether the request should skip the draft and go straight to the strong model."""
        return self.skip_threshold is not None and self.p_good < self.skip_threshold


def _single_threaded_openmp() -> None:
    """One row at a time, OpenMP's thread team costs more than it saves (measured: 31 ms -> 10 ms a prediction
    with the ensemble on two cores), and it would compete with the encoder's threads."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="openmp")


class LearnedRouter:
    """Holds the current artifact and swaps in a newer one when it appears under `models_dir`."""

    def __init__(self, settings: LearnedRouterSettings, metrics: Metrics, *, dimension: int,
                 embedding_model: str) -> None:
        self._settings = settings
        self._metrics = metrics
        self._dimension = dimension
        self._embedding_model = embedding_model
        self._artifact: RouterArtifact | None = None
        self._stamp: tuple[str, str] | None = None
        self._refused: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router-predict",
                                            initializer=_single_threaded_openmp)

    @property
    def artifact(self) -> RouterArtifact | None:
        """The artifact in use, if any."""
        return self._artifact

    @property
    def models_dir(self) -> Path:
        """Where artifacts are looked for (`models_dir`, else the shipped one)."""
        return models_dir_of(self._settings.models_dir)

    def _candidate(self) -> Path | None:
        if self._settings.artifact:
            return Path(self._settings.artifact)
        return latest_artifact_dir(self.models_dir)

    def _load(self, directory: Path) -> RouterArtifact:
        return load_artifact(directory, expected_dimension=self._dimension,
                             expected_features_version=FEATURES_VERSION, expected_embedding_model=self._embedding_model)

    def _refuse(self, directory: Path, error: ArtifactMismatch) -> None:
        key = str(directory)
        if self._refused.get(key) != str(error):
            logger.error("refusing router artifact: %s", error)
            self._metrics.inc("cascadeflow_router_artifact_refusals_total")
        self._refused[key] = str(error)

    def _use(self, artifact: RouterArtifact) -> None:
        self._artifact = artifact
        self._stamp = (artifact.metadata.created_at, artifact.metadata.version)
        self._refused.clear()
        logger.info("router artifact %s in use (skip threshold %s)", artifact.metadata.version,
                    self.skip_threshold_of(artifact))
        self._metrics.inc("cascadeflow_router_artifact_loads_total")

    def load_now(self) -> None:
        """Load the configured or newest artifact (blocking; at start-up, in a thread)."""
        directory = self._candidate()
        if directory is None:
            if self._settings.required:
                raise ConfigError(f"learned_router: no router artifact under {self.models_dir} "
                                  "(required: true); train one with `cascadeflow train`")
            logger.warning("no router artifact under %s: every cascade request drafts first", self.models_dir)
            return
        try:
            self._use(self._load(directory))
        except ArtifactMismatch as exc:
            self._refuse(directory, exc)
            if self._settings.required:
                raise ConfigError(f"learned_router: {exc}") from exc

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
        if stamp == self._stamp or str(directory) in self._refused:
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
        self._task = asyncio.create_task(self._watch(), name="router-artifact-watch")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reload_interval_s)
            try:
                await asyncio.to_thread(self.reload_if_newer)
            except Exception:  # a watch failure must never stop the watcher
                logger.exception("checking for a new router artifact failed")

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def skip_threshold_of(self, artifact: RouterArtifact) -> float | None:
        """The configured skip threshold, else the artifact's own."""
        if self._settings.skip_threshold is not None:
            return self._settings.skip_threshold
        return artifact.skip_threshold

    def _predict_now(self, artifact: RouterArtifact, vector: NDArray[np.float32],
                     hub_request: JSONObject) -> Prediction:
        structural = structural_vector(hub_request)
        row = np.concatenate([np.asarray(vector, dtype=np.float32).ravel(), structural])[None, :]
        p_good = float(artifact.predict(row)[0])
        return Prediction(p_good, self.skip_threshold_of(artifact), artifact.metadata.version,
                          tuple(float(v) for v in structural))

    async def predict(self, vector: NDArray[np.float32], hub_request: JSONObject) -> Prediction | None:
        """P(draft good enough) for a request (in a thread); None without an artifact or on failure."""
        artifact = self._artifact
        if artifact is None:
            return None
        started = time.perf_counter()
        try:
            prediction = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._predict_now, artifact, vector, hub_request)
        except Exception:  # a broken prediction degrades to the plain cascade
            logger.exception("router prediction failed; drafting first")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="router")
            return None
        self._metrics.inc("cascadeflow_router_predict_seconds_total", time.perf_counter() - started)
        self._metrics.inc("cascadeflow_router_predictions_total", skip="true" if prediction.skip else "false")
        return prediction

    def status(self) -> dict[str, object]:
        """For /ready: the artifact in use and any refusal."""
        artifact = self._artifact
        return {"ok": artifact is not None and not self._refused, "required": self._settings.required,
                "artifact": artifact.metadata.version if artifact else None,
                "skip_threshold": self.skip_threshold_of(artifact) if artifact else None,
                "refused": dict(self._refused)}
