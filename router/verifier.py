"""The trained verifier in service: P(draft good enough | request, draft answer) from a calibrated artifact.

The artifact (`models/verifier-<version>/`, written by `cascadeflow train --verifier`) is loaded, refused on
mismatch and hot-reloaded like the router's (router/artifacts.py). Predictions run on one worker thread.
Without an artifact the verify step falls back to the hand-weighted score (router/scoring/scorer.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from router.artifacts import ArtifactSource, ArtifactSpec, ArtifactWatcher, single_threaded_math
from router.learning_settings import VerifierSettings
from router.metrics import Metrics
from router.policy.classifier import RouterArtifact
from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION, verifier_features
from router.scoring.types import DraftEvidence

logger = logging.getLogger("router.verifier")

VERIFIER_SPEC = ArtifactSpec("verifier", "verifier", VERIFIER_FEATURES_VERSION, VERIFIER_FEATURE_NAMES, "none", 0)


class Verifier:
    """Holds the verifier artifact and predicts on a worker thread."""

    def __init__(self, settings: VerifierSettings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._watcher = ArtifactWatcher(VERIFIER_SPEC, ArtifactSource.of(settings), metrics,
                                        lambda artifact: f" (accept threshold {self.threshold_of(artifact)})")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifier",
                                            initializer=single_threaded_math)

    def reconfigure(self, settings: VerifierSettings) -> None:
        """Judge with reloaded settings (the accept threshold; the artifact's source needs a restart)."""
        self._settings = settings

    @property
    def artifact(self) -> RouterArtifact | None:
        """The artifact in use, if any."""
        return self._watcher.artifact

    def _pair(self, artifact: RouterArtifact, profile: str | None) -> Mapping[str, object]:
        """The thresholds training chose for `profile` (the artifact's default pair when it has no such profile)."""
        thresholds = artifact.metadata.thresholds
        profiles = thresholds.get("profiles")
        chosen = profiles.get(profile) if isinstance(profiles, dict) and profile is not None else None
        return chosen if isinstance(chosen, dict) else thresholds

    def threshold_of(self, artifact: RouterArtifact, profile: str | None = None) -> float:
        """The configured accept threshold, else the artifact's own for the profile (chosen in training)."""
        if self._settings.accept_threshold is not None:
            return self._settings.accept_threshold
        value = self._pair(artifact, profile).get("accept_threshold")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.5

    def paired_skip_threshold(self, router_version: str, profile: str | None = None) -> float | None:
        """The router skip threshold chosen in training together with the accept threshold (for the profile),
        when the verifier in use was trained against this router artifact and no accept threshold is configured
        over it."""
        artifact = self._watcher.artifact
        if artifact is None or self._settings.accept_threshold is not None:
            return None
        if artifact.metadata.thresholds.get("router_version") != router_version:
            return None
        value = self._pair(artifact, profile).get("skip_threshold")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    async def start(self) -> None:
        """Load the artifact and watch for newer ones."""
        await self._watcher.start()

    async def stop(self) -> None:
        """Stop watching."""
        await self._watcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def judge(self, evidence: DraftEvidence, profile: str | None = None, *,
                    features: tuple[float, ...] | None = None) -> tuple[float, float, str] | None:
        """(P(draft good enough), the accept threshold, the artifact version); None without an artifact or on
        failure (the caller falls back to the hand-weighted score). `features`: the evidence's feature row when
        the caller has it already (else it is computed on the worker thread)."""
        artifact = self._watcher.artifact
        if artifact is None:
            return None
        started = time.perf_counter()
        try:
            p_good = await asyncio.get_running_loop().run_in_executor(self._executor, _predict, artifact, evidence,
                                                                      features)
        except Exception:  # a broken prediction degrades to the hand-weighted score
            logger.exception("verifier prediction failed; using the hand-weighted score")
            self._metrics.inc("cascadeflow_dependency_errors_total", dependency="verifier")
            return None
        self._metrics.inc("cascadeflow_verifier_predict_seconds_total", time.perf_counter() - started)
        self._metrics.observe("cascadeflow_verifier_predict_duration_seconds", time.perf_counter() - started)
        return p_good, self.threshold_of(artifact, profile), artifact.metadata.version

    def status(self) -> dict[str, object]:
        """For /ready: the artifact in use (or the fallback) and any refusal."""
        artifact, refused = self._watcher.artifact, self._watcher.refused
        return {"ok": not refused, "required": self._settings.required,
                "active": "trained" if artifact is not None else "hand-weighted fallback",
                "artifact": artifact.metadata.version if artifact else None,
                "accept_threshold": self.threshold_of(artifact) if artifact else None, "refused": dict(refused)}


def _predict(artifact: RouterArtifact, evidence: DraftEvidence, features: tuple[float, ...] | None) -> float:
    row = np.asarray(features if features is not None else verifier_features(evidence), dtype=np.float32)[None, :]
    return float(artifact.predict(row)[0])
