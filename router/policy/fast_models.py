"""Predictions of the loaded router and verifier for a few rows at a time, without scikit-learn's overhead.

scikit-learn is built for large batches: its HistGradientBoosting walks its trees one call each (an OpenMP loop
per tree, about 10 ms for one row of 200 trees), and every estimator validates its input on every call (a
calibrated logistic verifier of three folds took about 5 ms a row). Serving asks for one row or a few. Here:
- boosted trees are stacked into flat arrays and all trees take one step down together (as many numpy
  operations as the trees are deep);
- a scaler + logistic regression is one affine map;
- a sigmoid-calibrated classifier is its folds' decision functions and their sigmoids, averaged.
The arithmetic is scikit-learn's own (same thresholds, missing-value rule, baselines, links and calibration),
in float64 throughout (scikit-learn keeps float32 rows in float32, a difference of about 1e-7); the tests
compare both on the same rows. `accelerated(model)` is applied at load time and never saved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit  # type: ignore[import-untyped]
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

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
        positive = expit(self.raw(x))
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


class AffineClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A binary logistic regression, optionally behind a StandardScaler, as one affine map of the row."""

    def __init__(self, model: Pipeline | LogisticRegression | None = None) -> None:
        if model is None:  # scikit-learn's get_params/clone protocol
            return
        steps = [step for _, step in model.steps] if isinstance(model, Pipeline) else [model]
        logistic = steps[-1]
        weights = np.asarray(logistic.coef_, dtype=np.float64).ravel()
        bias = float(np.asarray(logistic.intercept_).ravel()[0])
        if len(steps) == 2:  # ((x - mean) / scale) @ w + b  ==  x @ (w / scale) + (b - mean @ (w / scale))
            scaler = steps[0]
            scale = np.asarray(scaler.scale_ if scaler.scale_ is not None else np.ones_like(weights), dtype=np.float64)
            mean = np.asarray(scaler.mean_ if scaler.mean_ is not None else np.zeros_like(weights), dtype=np.float64)
            weights = weights / scale
            bias -= float(mean @ weights)
        self.weights, self.bias = weights, bias
        self.classes_ = logistic.classes_
        self.n_features_in_ = len(weights)

    def decision_function(self, x: Any) -> Floats:
        """The log-odds of the second class."""
        return np.asarray(np.asarray(x, dtype=np.float64) @ self.weights + self.bias, dtype=np.float64)

    def predict_proba(self, x: Any) -> Floats:
        """[P(class 0), P(class 1)] per row."""
        positive = expit(self.decision_function(x))
        return np.column_stack([1.0 - positive, positive])


class SigmoidCalibrated(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A binary CalibratedClassifierCV with sigmoid calibration: each fold's sigmoid of its decision, averaged."""

    def __init__(self, model: CalibratedClassifierCV | None = None) -> None:
        if model is None:  # scikit-learn's get_params/clone protocol
            return
        self.folds = [(_fast(fold.estimator), float(fold.calibrators[0].a_), float(fold.calibrators[0].b_))
                      for fold in model.calibrated_classifiers_]
        self.classes_ = model.classes_
        self.n_features_in_ = model.n_features_in_

    def predict_proba(self, x: Any) -> Floats:
        """The folds' calibrated [P(class 0), P(class 1)], averaged as scikit-learn averages them."""
        rows = np.asarray(x)
        positive = np.zeros(len(rows))
        for estimator, a, b in self.folds:
            positive += expit(-(a * estimator.decision_function(rows) + b))
        positive /= len(self.folds)
        return np.column_stack([1.0 - positive, positive])


def _binary(model: Any) -> bool:
    return len(getattr(model, "classes_", ())) == 2


def _fast(model: Any) -> Any:
    """The fast equivalent of one fitted model, or the model itself when there is none."""
    if isinstance(model, HistGradientBoostingRegressor) and model.loss == "squared_error":
        return StackedRegressor(model)
    if isinstance(model, HistGradientBoostingClassifier) and _binary(model):
        return StackedClassifier(model)
    if isinstance(model, LogisticRegression) and _binary(model):
        return AffineClassifier(model)
    if (isinstance(model, Pipeline) and len(model.steps) == 2 and isinstance(model.steps[0][1], StandardScaler)
            and isinstance(model.steps[1][1], LogisticRegression) and _binary(model.steps[1][1])):
        return AffineClassifier(model)
    if (isinstance(model, CalibratedClassifierCV) and model.method == "sigmoid" and _binary(model)
            and all(len(fold.calibrators) == 1 for fold in model.calibrated_classifiers_)):
        folds = [_fast(fold.estimator) for fold in model.calibrated_classifiers_]
        if all(callable(getattr(fold, "decision_function", None)) and fold is not original for fold, original
               in zip(folds, (f.estimator for f in model.calibrated_classifiers_), strict=True)):
            return SigmoidCalibrated(model)
    return model


def accelerated(model: Any) -> Any:
    """A loaded router or verifier model with fast parts: the router's ensemble keeps its class with its members
    and calibrator replaced; a calibrated classifier becomes a SigmoidCalibrated; anything else is returned as is.
    """
    members = getattr(model, "__dict__", {}).get("members_")
    if isinstance(members, dict):
        for name, member in list(members.items()):
            members[name] = _fast(member)
        if "calibrator_" in model.__dict__:
            model.calibrator_ = _fast(model.calibrator_)
        return model
    return _fast(model)
