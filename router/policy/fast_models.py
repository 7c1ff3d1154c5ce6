"""Compiles the fitted scikit-learn models of the router and verifier artifacts into `router/policy/compiled.py`
arrays (at training time, and at load time for an artifact that has no `compiled.npz` yet).

Knows the shapes the artifacts take: binary HistGradientBoostingClassifier, squared-error
HistGradientBoostingRegressor, LogisticRegression alone or behind a StandardScaler, a sigmoid-calibrated
CalibratedClassifierCV of those, and the router's `RouterEnsemble`. Anything else is left to scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from router.policy.compiled import Affine, Calibrated, Compiled, Ensemble, Trees
from router.policy.ensemble import RouterEnsemble


def _binary(model: Any) -> bool:
    return len(getattr(model, "classes_", ())) == 2 and list(model.classes_) == [0, 1]


def stacked(model: HistGradientBoostingClassifier | HistGradientBoostingRegressor) -> Trees:
    """Every tree of a fitted model stacked into flat node arrays (a leaf points at itself)."""
    if any(len(iteration) != 1 for iteration in model._predictors):
        raise ValueError("only binary classifiers and single-output regressors are stacked")
    trees = [iteration[0].nodes for iteration in model._predictors]
    if any(int(nodes["is_categorical"].max()) for nodes in trees):
        raise ValueError("categorical splits are not stacked")
    offsets = np.cumsum([0] + [len(nodes) for nodes in trees[:-1]])
    nodes = np.concatenate(trees)
    starts = np.repeat(offsets, [len(tree) for tree in trees])
    leaf = nodes["is_leaf"].astype(bool)
    own = np.arange(len(nodes))
    arrays = {"roots": offsets.astype(np.int64), "feature": np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64),
              "threshold": nodes["num_threshold"].astype(np.float64),
              "missing_left": nodes["missing_go_to_left"].astype(bool),
              "left": np.where(leaf, own, nodes["left"].astype(np.int64) + starts),
              "right": np.where(leaf, own, nodes["right"].astype(np.int64) + starts),
              "value": np.where(leaf, nodes["value"], 0.0)}
    return Trees(arrays, depth=int(nodes["depth"].max()) if len(nodes) else 0,
                 baseline=float(np.asarray(model._baseline_prediction).ravel()[0]),
                 classifier=isinstance(model, HistGradientBoostingClassifier))


def affine(model: Pipeline | LogisticRegression) -> Affine:
    """A binary logistic regression, behind an optional StandardScaler, as one affine map."""
    steps = [step for _, step in model.steps] if isinstance(model, Pipeline) else [model]
    logistic = steps[-1]
    weights = np.asarray(logistic.coef_, dtype=np.float64).ravel()
    bias = float(np.asarray(logistic.intercept_).ravel()[0])
    if len(steps) == 2:  # ((x - mean) / scale) @ w + b  ==  x @ (w / scale) + (b - mean @ (w / scale))
        scaler = steps[0]
        if scaler.scale_ is not None:
            weights = weights / np.asarray(scaler.scale_, dtype=np.float64)
        if scaler.mean_ is not None:
            bias -= float(np.asarray(scaler.mean_, dtype=np.float64) @ weights)
    return Affine(weights, bias)


def compiled(model: Any) -> Compiled | None:
    """The compiled equivalent of a fitted model, or None when this module does not know its shape."""
    if isinstance(model, HistGradientBoostingRegressor) and model.loss == "squared_error":
        return stacked(model)
    if isinstance(model, HistGradientBoostingClassifier) and _binary(model):
        return stacked(model)
    if isinstance(model, LogisticRegression) and _binary(model):
        return affine(model)
    if (isinstance(model, Pipeline) and len(model.steps) == 2 and isinstance(model.steps[0][1], StandardScaler)
            and isinstance(model.steps[1][1], LogisticRegression) and _binary(model.steps[1][1])):
        return affine(model)
    if (isinstance(model, CalibratedClassifierCV) and model.method == "sigmoid" and _binary(model)
            and all(len(fold.calibrators) == 1 for fold in model.calibrated_classifiers_)):
        folds = [(compiled(fold.estimator), float(fold.calibrators[0].a_), float(fold.calibrators[0].b_))
                 for fold in model.calibrated_classifiers_]
        if all(isinstance(inner, Trees | Affine) for inner, _, _ in folds):
            return Calibrated([(inner, a, b) for inner, a, b in folds if isinstance(inner, Trees | Affine)],
                              int(model.n_features_in_))
        return None
    if isinstance(model, RouterEnsemble) and hasattr(model, "members_"):
        members = model.members_
        parts = {name: compiled(members[name]) for name in ("trees", "linear", "gain")}
        calibrator = compiled(model.calibrator_)
        trees, linear, gain = parts["trees"], parts["linear"], parts["gain"]
        if not (isinstance(trees, Trees) and isinstance(linear, Affine) and isinstance(gain, Trees)
                and isinstance(calibrator, Affine)):
            return None
        vectors, labels = members["neighbours"]
        return Ensemble(trees=trees, linear=linear, gain=gain, vectors=np.asarray(vectors, dtype=np.float16),
                        labels=np.asarray(labels, dtype=np.float32), neighbours=int(model.neighbours),
                        dimension=int(model.embedding_dimension), calibrator=calibrator,
                        n_features=int(model.n_features_in_))
    return None


def accelerated(model: Any) -> Any:
    """The compiled model when there is one, else the model itself."""
    fast = compiled(model)
    return fast if fast is not None else model
