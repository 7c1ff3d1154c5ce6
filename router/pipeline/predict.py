"""The prediction step: the learned router's P(draft good enough) from the request alone, and its features."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from router.embedding.text import embedding_text
from router.metrics import Metrics
from router.observability.context import stage
from router.pipeline.outcome import RequestFeatures
from router.policy.features import structural_vector
from router.types import JSONObject

if TYPE_CHECKING:
    from router.embedding.encoder import Encoder
    from router.learned import LearnedRouter

logger = logging.getLogger("router.pipeline.predict")


class PredictStep:
    """Embeds (unless the cache step already did) and predicts; features are computed once, off the loop."""

    def __init__(self, learned: LearnedRouter | None, encoder: Encoder | None, metrics: Metrics, *,
                 logging_features: bool) -> None:
        self._learned = learned
        self._encoder = encoder
        self._metrics = metrics
        self._logging_features = logging_features

    async def run(self, hub_request: JSONObject, vector: NDArray[np.float32] | None,
                  profile: str | None = None) -> RequestFeatures:
        """The prediction, when there is an artifact; the vector and features too when the outcome log keeps them
        (so a new deployment can learn before it has an artifact)."""
        predicting = self._learned is not None and self._learned.artifact is not None
        if not predicting and not self._logging_features:
            return RequestFeatures(vector)
        if vector is None and self._encoder is not None:
            try:
                with stage("embed"), self._metrics.timer("cascadeflow_embedding_duration_seconds", step="predict"):
                    vector = await self._encoder.embed(embedding_text(hub_request))
            except Exception:  # an encoder failure degrades to the plain cascade
                logger.exception("embedding for the learned router failed; drafting first")
                self._metrics.inc("cascadeflow_dependency_errors_total", dependency="encoder")
                return RequestFeatures()
        if vector is None:
            return RequestFeatures()
        prediction = await self._learned.predict(vector, hub_request, profile) if self._learned is not None else None
        if prediction is not None:
            return RequestFeatures(vector, prediction.structural, prediction)
        structural = await asyncio.to_thread(structural_vector, hub_request)
        return RequestFeatures(vector, tuple(float(v) for v in structural))
