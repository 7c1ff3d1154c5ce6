"""The learned router's artifact: a fitted scikit-learn classifier of P(draft good enough) and its metadata.

An artifact is a directory `models/router-<version>/` holding `model.joblib` (any fitted estimator with
`predict_proba` whose classes are [0, 1], 1 = the draft is good enough) and `metadata.json` (what it was
trained on, how it scored, its thresholds, and the schema it expects). `load_artifact` refuses an artifact
whose feature schema, embedding dimension, scikit-learn version or model file does not match, naming what
differs, before unpickling anything. Loading and saving are blocking: the server calls them in a thread.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from numpy.typing import NDArray

from router.errors import ConfigError
from router.policy.compiled import (
    COMPILED_FILE,
    Affine,
    Calibrated,
    Ensemble,
    Trees,
    load_compiled,
    save_compiled,
)
from router.policy.features import FEATURE_NAMES

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
ARTIFACT_PREFIX = "router-"
_VERSION = re.compile(r"^(?P<kind>[a-z]+)-(?P<version>[0-9A-Za-z._-]+)$")

logger = logging.getLogger("router.policy.classifier")


class ArtifactMismatch(ConfigError):
    """An artifact (router or verifier) is missing, corrupted, or does not match what the server expects."""


@dataclass(frozen=True)
class ArtifactMetadata:
    """What `metadata.json` records about an artifact."""

    version: str
    created_at: str
    sklearn_version: str
    features_version: str
    feature_names: tuple[str, ...]
    embedding_model: str
    embedding_dimension: int
    model: Mapping[str, Any] = field(default_factory=dict)
    training_data: tuple[Mapping[str, Any], ...] = ()
    split: Mapping[str, Any] = field(default_factory=dict)
    scores: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    model_sha256: str = ""

    @property
    def n_features(self) -> int:
        """The width of the classifier's input: embedding then structural features."""
        return self.embedding_dimension + len(self.feature_names)

    def to_json(self) -> str:
        """The metadata as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=False, default=_jsonable) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ArtifactMetadata:
        """Parse `metadata.json`; raises ArtifactMismatch naming the bad or missing key."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactMismatch(f"corrupted {METADATA_FILE}: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ArtifactMismatch(f"corrupted {METADATA_FILE}: expected an object, got {type(data).__name__}")
        text_keys = ("version", "created_at", "sklearn_version", "features_version", "embedding_model")
        for key in text_keys:
            if not isinstance(data.get(key), str):
                raise ArtifactMismatch(f"corrupted {METADATA_FILE}: '{key}' is missing or not a string")
        names = data.get("feature_names")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ArtifactMismatch(f"corrupted {METADATA_FILE}: 'feature_names' is missing or not a list of names")
        dimension = data.get("embedding_dimension")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 0:
            raise ArtifactMismatch(f"corrupted {METADATA_FILE}: 'embedding_dimension' is not a non-negative integer "
                                   "(0: the model reads no embedding)")
        for key in ("model", "split", "scores", "thresholds"):
            if not isinstance(data.get(key, {}), dict):
                raise ArtifactMismatch(f"corrupted {METADATA_FILE}: '{key}' is not an object")
        training = data.get("training_data", [])
        if not isinstance(training, list) or not all(isinstance(item, dict) for item in training):
            raise ArtifactMismatch(f"corrupted {METADATA_FILE}: 'training_data' is not a list of objects")
        return cls(
            **{key: data[key] for key in text_keys}, feature_names=tuple(names), embedding_dimension=dimension,
            model=data.get("model", {}), training_data=tuple(training), split=data.get("split", {}),
            scores=data.get("scores", {}), thresholds=data.get("thresholds", {}),
            model_sha256=str(data.get("model_sha256", "")),
        )


@dataclass(frozen=True)
class RouterArtifact:
    """A loaded (or freshly fitted) router: the estimator, its metadata, and where it lives."""

    model: Any
    metadata: ArtifactMetadata
    directory: Path | None = None

    def predict(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        """P(draft good enough) for each row of a 2-d feature matrix."""
        rows = np.asarray(features, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.metadata.n_features:
            raise ValueError(f"expected a (n, {self.metadata.n_features}) feature matrix, got shape {rows.shape}")
        proba = np.asarray(self.model.predict_proba(rows), dtype=np.float64)
        return np.clip(proba[:, _positive_column(self.model)], 0.0, 1.0)

    @property
    def skip_threshold(self) -> float | None:
        """P(good) below which the draft is skipped and the strong model called, if the artifact chose one."""
        value = self.metadata.thresholds.get("skip_threshold")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _compiled_model(directory: Path, model_sha256: str | None) -> Any:
    """The artifact's `compiled.npz` when it mirrors this model.joblib (None: load the joblib)."""
    path = directory / COMPILED_FILE
    if not path.is_file() or not model_sha256:
        return None
    try:
        return load_compiled(path, source_sha256=model_sha256)
    except Exception as exc:  # a damaged file: the joblib still serves
        logger.warning("artifact %s: %s is unreadable (%s); loading %s", directory, COMPILED_FILE, exc, MODEL_FILE)
        return None


def _positive_column(model: Any) -> int:
    classes = [int(c) for c in getattr(model, "classes_", [])]
    if classes != [0, 1]:
        raise ArtifactMismatch(f"the classifier's classes are {classes}, expected [0, 1] (1 = draft good enough)")
    return 1


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (read in chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def save_artifact(artifact: RouterArtifact, directory: Path) -> Path:
    """Write `model.joblib` then `metadata.json` (with the model file's sha256) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / MODEL_FILE
    joblib.dump(artifact.model, model_path, compress=3)
    digest = file_sha256(model_path)
    write_compiled(artifact.model, directory, digest)
    metadata = ArtifactMetadata(**{**asdict(artifact.metadata), "model_sha256": digest})
    (directory / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
    return directory


def sklearn_version() -> str:
    """The installed scikit-learn's version, without importing it (serving a compiled artifact never does)."""
    return importlib.metadata.version("scikit-learn")


def write_compiled(model: Any, directory: Path, model_sha256: str) -> bool:
    """Write `compiled.npz` (the model as arrays, see router/policy/compiled.py) when its shape is known."""
    from router.policy.fast_models import compiled

    fast = compiled(model)
    if fast is not None:
        save_compiled(fast, directory / COMPILED_FILE, source_sha256=model_sha256)
    return fast is not None


def read_metadata(directory: Path) -> ArtifactMetadata:
    """The parsed `metadata.json` of an artifact directory (ArtifactMismatch when missing or corrupted)."""
    path = directory / METADATA_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtifactMismatch(f"artifact {directory}: cannot read {METADATA_FILE} ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ArtifactMismatch(f"artifact {directory}: corrupted {METADATA_FILE} ({exc})") from exc
    try:
        return ArtifactMetadata.from_json(text)
    except ArtifactMismatch as exc:
        raise ArtifactMismatch(f"artifact {directory}: {exc}") from exc


def check_metadata(metadata: ArtifactMetadata, *, expected_dimension: int, expected_features_version: str,
                   expected_embedding_model: str | None = None,
                   expected_feature_names: tuple[str, ...] = FEATURE_NAMES) -> None:
    """Raise ArtifactMismatch naming every difference between an artifact and what the server expects."""
    problems = []
    if expected_embedding_model is not None and metadata.embedding_model != expected_embedding_model:
        problems.append(f"embedding model {metadata.embedding_model!r} != expected {expected_embedding_model!r}")
    if metadata.features_version != expected_features_version:
        problems.append(f"features version {metadata.features_version!r} != expected {expected_features_version!r}")
    elif tuple(metadata.feature_names) != expected_feature_names:
        problems.append("feature names differ from this code's feature names (same version, different schema)")
    if metadata.embedding_dimension != expected_dimension:
        problems.append(f"embedding dimension {metadata.embedding_dimension} != expected {expected_dimension}")
    installed = sklearn_version()
    if _minor(metadata.sklearn_version) != _minor(installed):
        problems.append(f"trained with scikit-learn {metadata.sklearn_version}, installed {installed}")
    if problems:
        raise ArtifactMismatch("; ".join(problems) + " (retrain with `cascadeflow train`)")


def load_artifact(directory: Path, *, expected_dimension: int, expected_features_version: str,
                  expected_embedding_model: str | None = None,
                  expected_feature_names: tuple[str, ...] = FEATURE_NAMES) -> RouterArtifact:
    """Load and verify an artifact (blocking); raises ArtifactMismatch with a message naming what differs."""
    directory = Path(directory)
    metadata = read_metadata(directory)
    try:
        check_metadata(metadata, expected_dimension=expected_dimension,
                       expected_features_version=expected_features_version,
                       expected_embedding_model=expected_embedding_model,
                       expected_feature_names=expected_feature_names)
    except ArtifactMismatch as exc:
        raise ArtifactMismatch(f"artifact {directory}: {exc}") from exc
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactMismatch(f"artifact {directory}: {MODEL_FILE} is missing")
    if metadata.model_sha256 and file_sha256(model_path) != metadata.model_sha256:
        raise ArtifactMismatch(f"artifact {directory}: {MODEL_FILE} does not match the sha256 in metadata")
    model = _compiled_model(directory, metadata.model_sha256)
    if model is None:
        try:
            model = joblib.load(model_path)
        except Exception as exc:  # unpickling can fail in many ways; all mean the same thing here
            raise ArtifactMismatch(f"artifact {directory}: cannot load {MODEL_FILE} ({exc})") from exc
    if not callable(getattr(model, "predict_proba", None)):
        raise ArtifactMismatch(f"artifact {directory}: the model has no predict_proba")
    width = getattr(model, "n_features_in_", metadata.n_features)
    if width != metadata.n_features:
        raise ArtifactMismatch(f"artifact {directory}: the model takes {width} features, "
                               f"metadata says {metadata.n_features}")
    try:
        _positive_column(model)
    except ArtifactMismatch as exc:
        raise ArtifactMismatch(f"artifact {directory}: {exc}") from exc
    if not isinstance(model, Trees | Affine | Calibrated | Ensemble):  # a joblib without a compiled.npz
        from router.policy.fast_models import accelerated

        model = accelerated(model)  # the same predictions, without scikit-learn's per-call overhead
    return RouterArtifact(model=model, metadata=metadata, directory=directory)


def artifact_version(directory: Path, prefix: str = ARTIFACT_PREFIX) -> str | None:
    """The version in a `<prefix><version>` directory name (`router-...`), or None for any other name."""
    match = _VERSION.match(directory.name)
    return match.group("version") if match and directory.name.startswith(prefix) else None


def latest_artifact_dir(models_dir: Path, prefix: str = ARTIFACT_PREFIX) -> Path | None:
    """The newest valid `<prefix>` artifact under `models_dir` (by metadata `created_at`, then version)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return None
    candidates: list[tuple[str, str, Path]] = []
    for child in models_dir.iterdir():
        if not child.is_dir() or artifact_version(child, prefix) is None or not (child / MODEL_FILE).is_file():
            continue
        try:
            metadata = read_metadata(child)
        except ArtifactMismatch:
            continue
        candidates.append((metadata.created_at, metadata.version, child))
    return max(candidates)[2] if candidates else None
