"""Boosted-tree predictions for a few rows at a time, without scikit-learn's per-tree overhead.

scikit-learn's HistGradientBoosting walks its trees one call each (an OpenMP loop per tree): with 200 trees, one
row costs about 10 ms of calls that do almost nothing. Here every tree of a model is stacked into flat arrays
and all trees take one step down together, so a row costs about as many numpy operations as the trees are
deep. The arithmetic is scikit-learn's own (same thresholds, same missing-value rule, same baseline and link),
and `accelerate` replaces the fitted models inside a loaded artifact in place; it is never saved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

Floats = NDArray[np.float64]


class StackedTrees:
    """A fitted binary HistGradientBoostingClassifier or a squared-error regressor, as flat node arrays."""

    def __init__(self, model: HistGradientBoostingClassifier | HistGradientBoostingRegressor | None = None) -> None:
        if model is None:  # scikit-learn's get_params/clone protocol; only `stacked` builds a usable one
            return
        trees = [predictor.nodes for iteration in model._predictors for predictor in iteration]
        if any(len(iteration) != 1 for iteration in model._predictors):
            raise ValueError("only binary classifiers and single-output regressors are stacked")
        if any(int(nodes["is_categorical"].max()) for nodes in trees):
            raise ValueError("categorical splits are not stacked")
        offsets = np.cumsum([0] + [len(nodes) for nodes in trees[:-1]])
        nodes = np.concatenate(trees)
        starts = np.repeat(offsets, [len(tree) for tree in trees])
        leaf = nodes["is_leaf"].astype(bool)
        own = np.arange(len(nodes))
        self.roots = offsets.astype(np.int64)
        self.feature = np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.left = np.where(leaf, own, nodes["left"].astype(np.int64) + starts)  # a leaf points at itself
        self.right = np.where(leaf, own, nodes["right"].astype(np.int64) + starts)
        self.value = np.where(leaf, nodes["value"], 0.0)
        self.depth = int(nodes["depth"].max()) if len(nodes) else 0
        self.baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
        self.classifier = isinstance(model, HistGradientBoostingClassifier)
        self.classes_ = getattr(model, "classes_", None)
        self.n_features_in_ = model.n_features_in_

    def raw(self, x: Any) -> Floats:
        """The summed leaf values plus the baseline: scikit-learn's raw prediction, one per row."""
        rows = np.asarray(x, dtype=np.float64)
        index = np.broadcast_to(self.roots, (len(rows), len(self.roots))).copy()
        row_of = np.arange(len(rows))[:, None]
        for _ in range(self.depth):
            values = rows[row_of, self.feature[index]]
            go_left = (values <= self.threshold[index]) | (np.isnan(values) & self.missing_left[index])
            index = np.where(go_left, self.left[index], self.right[index])
        return np.asarray(self.value[index].sum(axis=1) + self.baseline, dtype=np.float64)

    def decision_function(self, x: Any) -> Floats:
        """The classifier's log-odds."""
        return self.raw(x)

    def predict_proba(self, x: Any) -> Floats:
        """[P(class 0), P(class 1)] per row."""
        positive = 1.0 / (1.0 + np.exp(-self.raw(x)))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, x: Any) -> NDArray[Any]:
        """The regressor's prediction (identity link), or the classifier's class."""
        if self.classifier:
            classes = np.asarray(self.classes_)
            return np.asarray(classes[(self.raw(x) > 0).astype(np.int64)])
        return self.raw(x)


class StackedClassifier(ClassifierMixin, BaseEstimator, StackedTrees):  # type: ignore[misc]
    """A stacked binary classifier that scikit-learn's calibration code accepts as a classifier."""


class StackedRegressor(RegressorMixin, BaseEstimator, StackedTrees):  # type: ignore[misc]
    """A stacked squared-error regressor."""


def _stacked(model: Any) -> Any:
    if isinstance(model, HistGradientBoostingRegressor) and model.loss == "squared_error":
        return StackedRegressor(model)
    if isinstance(model, HistGradientBoostingClassifier) and len(getattr(model, "classes_", ())) == 2:
        return StackedClassifier(model)
    return model


def accelerate(model: Any) -> int:
    """Replace the boosted trees inside a loaded router or verifier model by stacked ones; how many it replaced.

    Knows the two shapes the artifacts take: the router's ensemble (`members_`) and a calibrated classifier
    (`calibrated_classifiers_[i].estimator`). Anything else is left as it is.
    """
    replaced = 0
    members = getattr(model, "__dict__", {}).get("members_")
    if isinstance(members, dict):
        for name, member in list(members.items()):
            members[name] = _stacked(member)
            replaced += members[name] is not member
    for calibrated in getattr(model, "calibrated_classifiers_", []) or []:
        estimator = getattr(calibrated, "estimator", None)
        stacked = _stacked(estimator)
        if stacked is not estimator:
            calibrated.estimator = stacked
            replaced += 1
    return replaced
