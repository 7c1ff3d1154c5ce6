"""The learned router at serving time: the loaded artifact, its predictions, and hot reload from `models/`.

Loading and predicting are CPU work (joblib, scikit-learn): they run in a thread, never on the event loop, and
the predictions of concurrent requests run as one batch (router/batching.py). A
mismatched or corrupt artifact is refused with a message naming what differs; the server keeps the artifact it
has (or none) and reports the refusal in /ready and the metrics. With `required: true` a refusal at start-up
stops the server instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from router.artifacts import ArtifactSource, ArtifactSpec, ArtifactWatcher, single_threaded_math
from router.assets import models_dir_of
from router.batching import MicroBatcher
from router.learning_settings import LearnedRouterSettings
from router.metrics import Metrics
from router.policy.classifier import RouterArtifact
from router.policy.features import FEATURE_NAMES, FEATURES_VERSION, structural_vector
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


@dataclass(frozen=True)
class _Query:
    """One request's prediction to make."""

    artifact: RouterArtifact
    vector: NDArray[np.float32]
    hub_request: JSONObject
    profile: str | None


def router_spec(embedding_model: str, dimension: int) -> ArtifactSpec:
    """What this code expects of a router artifact."""
    return ArtifactSpec("router", "learned_router", FEATURES_VERSION, FEATURE_NAMES, embedding_model, dimension)


class LearnedRouter:
    """The router artifact in service (see router/artifacts.py) and its predictions, on one worker thread."""

    def __init__(self, settings: LearnedRouterSettings, metrics: Metrics, *, dimension: int,
                 embedding_model: str, paired_skip: Callable[[str, str | None], float | None] | None = None) -> None:
        self._settings = settings
        self._paired_skip = paired_skip
        self._metrics = metrics
        spec = router_spec(embedding_model, dimension)
        self._watcher = ArtifactWatcher(spec, ArtifactSource.of(settings), metrics,
                                        lambda artifact: f" (skip threshold {self.skip_threshold_of(artifact)})")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router-predict",
                                            initializer=single_threaded_math)
        self._batcher: MicroBatcher[_Query, Prediction] = MicroBatcher(self._predict_batch, self._executor)

    def reconfigure(self, settings: LearnedRouterSettings) -> None:
        """Predict with reloaded settings (the skip threshold; the artifact's source needs a restart)."""
        self._settings = settings

    @property
    def artifact(self) -> RouterArtifact | None:
        """The artifact in use, if any."""
        return self._watcher.artifact

    @property
    def models_dir(self) -> Path:
        """Where artifacts are looked for (`models_dir`, else the shipped one)."""
        return models_dir_of(self._settings.models_dir)

    def load_now(self) -> None:
        """Load the configured or newest artifact (blocking; at start-up, in a thread)."""
        self._watcher.load_now()

    def reload_if_newer(self) -> bool:
        """Swap in a newer artifact if one appeared (blocking: call in a thread). True when swapped."""
        return self._watcher.reload_if_newer()

    async def start(self) -> None:
        """Load the artifact and watch for newer ones."""
        await self._watcher.start()

    async def stop(self) -> None:
        """Stop watching."""
        await self._watcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def skip_threshold_of(self, artifact: RouterArtifact, profile: str | None = None) -> float | None:
        """The configured skip threshold, else the one the verifier's training chose together with its accept
        threshold for this router artifact (and the rule's profile), else the artifact's own."""
        if self._settings.skip_threshold is not None:
            return self._settings.skip_threshold
        paired = self._paired_skip(artifact.metadata.version, profile) if self._paired_skip is not None else None
        return paired if paired is not None else artifact.skip_threshold

    def _predict_batch(self, queries: list[_Query]) -> list[Prediction]:
        """One model call for the queries of one artifact (a batch spans two only across a reload)."""
        predictions: dict[int, Prediction] = {}
        for artifact in {id(query.artifact): query.artifact for query in queries}.values():
            mine = [index for index, query in enumerate(queries) if query.artifact is artifact]
            structural = [structural_vector(queries[index].hub_request) for index in mine]
            rows = np.stack([np.concatenate([np.asarray(queries[index].vector, dtype=np.float32).ravel(), features])
                             for index, features in zip(mine, structural, strict=True)])
            for index, features, p_good in zip(mine, structural, artifact.predict(rows), strict=True):
                predictions[index] = Prediction(float(p_good), self.skip_threshold_of(artifact, queries[index].profile),
                                                artifact.metadata.version, tuple(float(v) for v in features))
        return [predictions[index] for index in range(len(queries))]

    async def predict(self, vector: NDArray[np.float32], hub_request: JSONObject,
                      profile: str | None = None) -> Prediction | None:
        """P(draft good enough) for a request (in a thread), with the skip threshold of the rule's verifier
        profile; None without an artifact or on failure."""
        artifact = self._watcher.artifact
        if artifact is None:
            return None
        started = time.perf_counter()
        try:
            prediction = await self._batcher.submit(_Query(artifact, vector, hub_request, profile))
        except Exception:  # a broken prediction degrades to the plain cascade
            logger.exception("router prediction failed; drafting first")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="router")
            return None
        self._metrics.inc("cascadeflow_router_predict_seconds_total", time.perf_counter() - started)
        self._metrics.observe("cascadeflow_router_predict_duration_seconds", time.perf_counter() - started)
        self._metrics.inc("cascadeflow_router_predictions_total", skip="true" if prediction.skip else "false")
        return prediction

    def status(self) -> dict[str, object]:
        """For /ready: the artifact in use and any refusal."""
        artifact, refused = self._watcher.artifact, self._watcher.refused
        return {"ok": artifact is not None and not refused, "required": self._settings.required,
                "artifact": artifact.metadata.version if artifact else None,
                "skip_threshold": self.skip_threshold_of(artifact) if artifact else None,
                "refused": dict(refused)}
