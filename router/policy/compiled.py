"""The router's and the verifier's fitted models as plain numpy arrays: predictions without scikit-learn.

scikit-learn is built for large batches: its HistGradientBoosting walks its trees one call each (about 10 ms
for one row of 200 trees) and every estimator validates its input on every call; importing it costs about
100 MB and a second or two of start-up. Serving asks for one row or a few. So a loaded artifact is evaluated
from arrays (built from the fitted models by `router/policy/fast_models.py`, saved beside `model.joblib` as
`compiled.npz`):
- boosted trees stacked into flat node arrays, all trees stepping down together;
- a scaler + logistic regression as one affine map;
- a sigmoid-calibrated classifier as its folds' decisions and sigmoids, averaged;
- the router ensemble's four views averaged and calibrated, as `RouterEnsemble` does.
The arithmetic is scikit-learn's own, in float64 (scikit-learn keeps float32 rows in float32 in places, a
difference of about 1e-7); the tests compare both on the same rows. This module imports numpy only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
COMPILED_FILE = "compiled.npz"
FORMAT = 1
BINARY = np.array([0, 1])


def sigmoid(values: Floats) -> Floats:
    """The logistic function, without overflow warnings for large magnitudes."""
    out = np.empty_like(values, dtype=np.float64)
    positive = values >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-values[positive]))
    exp = np.exp(values[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


class Decision(Protocol):
    """A model with a per-row decision value (log-odds, or a regression's prediction)."""

    def decision_function(self, x: Any) -> Floats: ...


class Trees:
    """Boosted trees (a binary classifier's log-odds or a squared-error regressor's prediction) as arrays."""

    def __init__(self, arrays: dict[str, NDArray[Any]], *, depth: int, baseline: float, classifier: bool) -> None:
        self.arrays = arrays
        self.depth, self.baseline, self.classifier = depth, baseline, classifier
        self.classes_ = BINARY

    def decision_function(self, x: Any) -> Floats:
        """The summed leaf values plus the baseline, per row."""
        a = self.arrays
        rows = np.asarray(x, dtype=np.float64)
        index = np.broadcast_to(a["roots"], (len(rows), len(a["roots"]))).copy()
        row_of = np.arange(len(rows))[:, None]
        for _ in range(self.depth):
            values = rows[row_of, a["feature"][index]]
            go_left = (values <= a["threshold"][index]) | (np.isnan(values) & a["missing_left"][index])
            index = np.where(go_left, a["left"][index], a["right"][index])
        return np.asarray(a["value"][index].sum(axis=1) + self.baseline, dtype=np.float64)

    def predict_proba(self, x: Any) -> Floats:
        positive = sigmoid(self.decision_function(x))
        return np.column_stack([1.0 - positive, positive])

    def state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        return {"kind": "trees", "depth": self.depth, "baseline": self.baseline,
                "classifier": self.classifier}, self.arrays


class Affine:
    """A binary logistic regression (after any standard scaling) as `x @ weights + bias`."""

    def __init__(self, weights: Floats, bias: float) -> None:
        self.weights, self.bias = np.asarray(weights, dtype=np.float64), float(bias)
        self.classes_ = BINARY
        self.n_features_in_ = len(self.weights)

    def decision_function(self, x: Any) -> Floats:
        return np.asarray(np.asarray(x, dtype=np.float64) @ self.weights + self.bias, dtype=np.float64)

    def predict_proba(self, x: Any) -> Floats:
        positive = sigmoid(self.decision_function(x))
        return np.column_stack([1.0 - positive, positive])

    def state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        return {"kind": "affine", "bias": self.bias}, {"weights": self.weights}


class Calibrated:
    """Sigmoid calibration of each fold's decision, `sigmoid(-(a * d + b))`, averaged over the folds."""

    def __init__(self, folds: list[tuple[Trees | Affine, float, float]], n_features: int) -> None:
        self.folds = folds
        self.classes_ = BINARY
        self.n_features_in_ = n_features

    def predict_proba(self, x: Any) -> Floats:
        rows = np.asarray(x)
        positive = np.zeros(len(rows))
        for model, a, b in self.folds:
            positive += sigmoid(-(a * model.decision_function(rows) + b))
        positive /= len(self.folds)
        return np.column_stack([1.0 - positive, positive])

    def state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        spec: dict[str, Any] = {"kind": "calibrated", "n_features": self.n_features_in_, "folds": []}
        arrays: dict[str, NDArray[Any]] = {}
        for index, (model, a, b) in enumerate(self.folds):
            inner, inner_arrays = model.state()
            spec["folds"].append({"model": inner, "a": a, "b": b})
            arrays.update({f"fold{index}.{name}": value for name, value in inner_arrays.items()})
        return spec, arrays


class Ensemble:
    """`RouterEnsemble`: boosted trees, a logistic on the embedding, a cosine k-NN vote and a boosted regression
    of the quality the strong model adds, averaged and then calibrated."""

    def __init__(self, *, trees: Trees, linear: Affine, gain: Trees, vectors: NDArray[np.float16],
                 labels: NDArray[np.float32], neighbours: int, dimension: int, calibrator: Affine,
                 n_features: int) -> None:
        self.trees, self.linear, self.gain, self.calibrator = trees, linear, gain, calibrator
        self.vectors, self.labels = vectors, labels
        self.vectors32 = vectors.astype(np.float32)
        self.neighbours, self.dimension = neighbours, dimension
        self.classes_ = BINARY
        self.n_features_in_ = n_features

    def _vote(self, embedding: NDArray[np.float32]) -> Floats:
        k = max(1, min(self.neighbours, len(self.labels)))
        query = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        similarity = (self.vectors32 @ query.T).T  # this order: 4x faster than query @ vectors.T for 8 rows
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0) + 1e-6
        return np.asarray((weights * self.labels[nearest]).sum(axis=1) / weights.sum(axis=1), dtype=np.float64)

    def predict_proba(self, x: Any) -> Floats:
        rows = np.asarray(x, dtype=np.float32)
        embedding = rows[:, :self.dimension]
        average = np.mean([sigmoid(self.trees.decision_function(rows)),
                           sigmoid(self.linear.decision_function(embedding)),
                           self._vote(embedding),
                           1.0 - np.clip(self.gain.decision_function(rows), 0.0, 1.0)], axis=0)
        return self.calibrator.predict_proba(average[:, None])

    def state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        spec: dict[str, Any] = {"kind": "ensemble", "neighbours": self.neighbours, "dimension": self.dimension,
                                "n_features": self.n_features_in_}
        arrays: dict[str, NDArray[Any]] = {"vectors": self.vectors, "labels": self.labels}
        for name in ("trees", "linear", "gain", "calibrator"):
            inner, inner_arrays = getattr(self, name).state()
            spec[name] = inner
            arrays.update({f"{name}.{key}": value for key, value in inner_arrays.items()})
        return spec, arrays


Compiled = Trees | Affine | Calibrated | Ensemble


def _build(spec: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> Any:
    kind = spec["kind"]

    def mine(name: str) -> dict[str, NDArray[Any]]:
        return {key[len(name) + 1:]: value for key, value in arrays.items() if key.startswith(f"{name}.")}

    if kind == "trees":
        return Trees(arrays, depth=int(spec["depth"]), baseline=float(spec["baseline"]),
                     classifier=bool(spec["classifier"]))
    if kind == "affine":
        return Affine(arrays["weights"], float(spec["bias"]))
    if kind == "calibrated":
        folds = [(_build(fold["model"], mine(f"fold{index}")), float(fold["a"]), float(fold["b"]))
                 for index, fold in enumerate(spec["folds"])]
        return Calibrated(folds, int(spec["n_features"]))
    if kind == "ensemble":
        return Ensemble(trees=_build(spec["trees"], mine("trees")), linear=_build(spec["linear"], mine("linear")),
                        gain=_build(spec["gain"], mine("gain")), calibrator=_build(spec["calibrator"],
                                                                                    mine("calibrator")),
                        vectors=arrays["vectors"], labels=arrays["labels"],
                        neighbours=int(spec["neighbours"]), dimension=int(spec["dimension"]),
                        n_features=int(spec["n_features"]))
    raise ValueError(f"unknown compiled model kind {kind!r}")


def save_compiled(model: Compiled, path: Path, *, source_sha256: str) -> None:
    """Write the model's arrays and structure (`source_sha256`: the digest of the model.joblib it mirrors)."""
    spec, arrays = model.state()
    header = json.dumps({"format": FORMAT, "source_sha256": source_sha256, "model": spec})
    named: dict[str, Any] = {"__spec__": np.frombuffer(header.encode("utf-8"), dtype=np.uint8), **arrays}
    with path.open("wb") as stream:
        np.savez_compressed(stream, **named)


def load_compiled(path: Path, *, source_sha256: str | None) -> Compiled | None:
    """The compiled model, or None when it mirrors another model.joblib or has another format (then the joblib
    is loaded with scikit-learn instead)."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["__spec__"]).decode("utf-8"))
        if header.get("format") != FORMAT or (source_sha256 and header.get("source_sha256") != source_sha256):
            return None
        arrays = {name: data[name] for name in data.files if name != "__spec__"}
    model: Compiled = _build(header["model"], arrays)
    return model
