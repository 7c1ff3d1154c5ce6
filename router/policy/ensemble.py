"""The router's estimator: four views of a request averaged, then calibrated (a scikit-learn classifier).

Which requests the draft fails is not monotonic in how hard they look (when both models fail, the draft was
"good enough"), and no single model family captured it well on the RouteLLM data, so four are averaged:
- gradient-boosted trees on every feature (embedding and structural);
- a logistic regression on the embedding;
- a cosine k-nearest-neighbour vote over the training prompts (similar prompts fail alike); the embeddings are
  kept as float16 to keep the artifact small;
- gradient-boosted regression of the quality the strong model adds over the draft, when the data says how
  much (else 1 - label).
The average is calibrated into P(draft good enough) by a logistic fit on out-of-fold averages (Platt scaling),
so the skip threshold means a probability. Pure computation: no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

Floats = NDArray[np.float64]


class RouterEnsemble(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """P(draft good enough) from a feature row whose first `embedding_dimension` columns are the embedding."""

    def __init__(self, embedding_dimension: int = 384, neighbours: int = 200, calibration_folds: int = 3,
                 random_state: int = 0) -> None:
        self.embedding_dimension = embedding_dimension
        self.neighbours = neighbours
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    def _fit_members(self, x: NDArray[np.float32], y: NDArray[np.int64], gain: Floats) -> dict[str, Any]:
        embedding = x[:, :self.embedding_dimension]
        rounds = int(np.clip(len(y) // 20, 30, 200))  # small logs: fewer boosting rounds (each costs ~1 ms)
        trees = HistGradientBoostingClassifier(max_iter=rounds, learning_rate=0.05, max_leaf_nodes=15,
                                               l2_regularization=1.0, random_state=self.random_state)
        linear = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
        regression = HistGradientBoostingRegressor(max_iter=int(rounds * 1.5), learning_rate=0.05,
                                                   max_leaf_nodes=15, random_state=self.random_state)
        norms = np.linalg.norm(embedding, axis=1, keepdims=True)
        return {
            "trees": trees.fit(x, y),
            "linear": linear.fit(embedding, y),
            "gain": regression.fit(x, gain),
            "neighbours": ((embedding / np.maximum(norms, 1e-12)).astype(np.float16), y.astype(np.float32)),
        }

    def _neighbour_vote(self, stored: tuple[NDArray[np.float16], NDArray[np.float32]],
                        embedding: NDArray[np.float32], vectors32: NDArray[np.float32] | None = None) -> Floats:
        vectors, labels = stored
        k = max(1, min(self.neighbours, len(labels)))
        query = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        similarity = query @ (vectors32 if vectors32 is not None else vectors.astype(np.float32)).T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0) + 1e-6
        return np.asarray((weights * labels[nearest]).sum(axis=1) / weights.sum(axis=1), dtype=np.float64)

    def _average(self, members: dict[str, Any], x: NDArray[np.float32],
                 vectors32: NDArray[np.float32] | None = None) -> Floats:
        embedding = x[:, :self.embedding_dimension]
        scores = [
            members["trees"].predict_proba(x)[:, 1],
            members["linear"].predict_proba(embedding)[:, 1],
            self._neighbour_vote(members["neighbours"], embedding, vectors32),
            1.0 - np.clip(members["gain"].predict(x), 0.0, 1.0),
        ]
        return np.asarray(np.mean(scores, axis=0), dtype=np.float64)

    def fit(self, x: Any, y: Any, gain: Any = None) -> RouterEnsemble:
        """Fit the calibration on out-of-fold averages, then the members on all rows."""
        rows = np.asarray(x, dtype=np.float32)
        labels = np.asarray(y, dtype=np.int64)
        added = 1.0 - labels.astype(np.float64) if gain is None else np.asarray(gain, dtype=np.float64)
        counts = np.bincount(labels, minlength=2)
        if len(counts) != 2 or counts.min() < 2:
            raise ValueError("RouterEnsemble needs at least two rows of each label (0 and 1)")
        folds = StratifiedKFold(int(min(self.calibration_folds, counts.min())), shuffle=True,
                                random_state=self.random_state)
        out_of_fold = np.zeros(len(labels))
        for train, held in folds.split(rows, labels):
            out_of_fold[held] = self._average(self._fit_members(rows[train], labels[train], added[train]), rows[held])
        self.calibrator_ = LogisticRegression(C=100.0).fit(out_of_fold[:, None], labels)
        self.members_ = self._fit_members(rows, labels, added)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = rows.shape[1]
        return self

    def predict_proba(self, x: Any) -> Floats:
        """Calibrated [P(not good enough), P(good enough)] per row."""
        rows = np.asarray(x, dtype=np.float32)
        vectors32 = self.__dict__.get("_vectors32")
        if vectors32 is None:  # the stored float16 neighbours, widened once per loaded model
            vectors32 = self.__dict__["_vectors32"] = self.members_["neighbours"][0].astype(np.float32)
        p_good = self.calibrator_.predict_proba(self._average(self.members_, rows, vectors32)[:, None])[:, 1]
        return np.column_stack([1.0 - p_good, p_good])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the widened neighbour cache (the artifact keeps float16)."""
        state = dict(super().__getstate__())
        state.pop("_vectors32", None)
        return state

    def predict(self, x: Any) -> NDArray[np.int64]:
        """1 where the draft is predicted good enough (P >= 0.5)."""
        return (self.predict_proba(x)[:, 1] >= 0.5).astype(np.int64)
