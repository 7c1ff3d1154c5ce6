"""Router artifacts: saved with their metadata, loaded back identically, refused when they do not match."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression

from router.errors import ConfigError
from router.learned import LearnedRouter
from router.learning_settings import LearnedRouterSettings
from router.metrics import Metrics
from router.policy.classifier import (
    ArtifactMetadata,
    ArtifactMismatch,
    RouterArtifact,
    latest_artifact_dir,
    load_artifact,
    save_artifact,
)
from router.policy.features import FEATURE_NAMES, FEATURES_VERSION

DIMENSION = 8


def make_artifact(directory: Path, version: str = "1", *, created_at: str = "2026-11-29T00:00:00+00:00",
                  skip_threshold: float = 0.4, features_version: str = FEATURES_VERSION,
                  dimension: int = DIMENSION) -> Path:
    """A tiny real artifact: logistic regression on random features where the first column decides."""
    rng = np.random.default_rng(0)
    width = dimension + len(FEATURE_NAMES)
    x = rng.normal(size=(200, width)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    metadata = ArtifactMetadata(
        version=version, created_at=created_at, sklearn_version=sklearn.__version__,
        features_version=features_version, feature_names=FEATURE_NAMES, embedding_model="test-encoder",
        embedding_dimension=dimension, thresholds={"skip_threshold": skip_threshold})
    return save_artifact(RouterArtifact(model, metadata), directory / f"router-{version}")


def router_for(models: Path, metrics: Metrics) -> LearnedRouter:
    return LearnedRouter(LearnedRouterSettings(models_dir=str(models)), metrics, dimension=DIMENSION,
                         embedding_model="test-encoder")


def test_an_artifact_round_trips_with_its_metadata(tmp_path: Path) -> None:
    directory = make_artifact(tmp_path)
    loaded = load_artifact(directory, expected_dimension=DIMENSION, expected_features_version=FEATURES_VERSION)
    metadata = json.loads((directory / "metadata.json").read_text())
    assert metadata["features_version"] == FEATURES_VERSION and len(metadata["model_sha256"]) == 64
    row = np.zeros((2, DIMENSION + len(FEATURE_NAMES)), dtype=np.float32)
    row[0, 0], row[1, 0] = 3.0, -3.0
    p_good = loaded.predict(row)
    assert p_good[0] > 0.9 and p_good[1] < 0.1
    assert loaded.skip_threshold == 0.4


@pytest.mark.parametrize(("change", "message"), [
    ("features_version", "features version '0' != expected"),
    ("dimension", "embedding dimension 9 != expected 8"),
    ("sklearn", "trained with scikit-learn 0.1.0"),
    ("model_bytes", "does not match the sha256"),
    ("metadata_json", "not JSON"),
    ("embedding_model", "embedding model 'test-encoder' != expected 'other-encoder'"),
])
def test_a_mismatched_artifact_is_refused_with_a_clear_message(tmp_path: Path, change: str, message: str) -> None:
    directory = make_artifact(tmp_path, features_version="0" if change == "features_version" else FEATURES_VERSION,
                              dimension=9 if change == "dimension" else DIMENSION)
    metadata_path = directory / "metadata.json"
    if change == "sklearn":
        data = json.loads(metadata_path.read_text())
        metadata_path.write_text(json.dumps({**data, "sklearn_version": "0.1.0"}))
    elif change == "model_bytes":
        with (directory / "model.joblib").open("ab") as handle:
            handle.write(b"tampered")
    elif change == "metadata_json":
        metadata_path.write_text("{not json")
    expected_model = "other-encoder" if change == "embedding_model" else "test-encoder"
    with pytest.raises(ArtifactMismatch, match=message) as caught:
        load_artifact(directory, expected_dimension=DIMENSION, expected_features_version=FEATURES_VERSION,
                      expected_embedding_model=expected_model)
    assert str(directory) in str(caught.value)


def test_the_server_side_router_refuses_or_fails_start_up_as_configured(tmp_path: Path) -> None:
    make_artifact(tmp_path, dimension=9)
    metrics = Metrics()
    lenient = router_for(tmp_path, metrics)
    lenient.load_now()
    status = lenient.status()
    assert lenient.artifact is None and status["ok"] is False
    assert "embedding dimension 9 != expected 8" in json.dumps(status["refused"])
    assert metrics.value("cascadeflow_router_artifact_refusals_total") == 1
    strict = LearnedRouter(LearnedRouterSettings(models_dir=str(tmp_path), required=True), Metrics(),
                           dimension=DIMENSION, embedding_model="test-encoder")
    with pytest.raises(ConfigError, match="learned_router: .*embedding dimension 9"):
        strict.load_now()
    empty = LearnedRouter(LearnedRouterSettings(models_dir=str(tmp_path / "none"), required=True), Metrics(),
                          dimension=DIMENSION, embedding_model="test-encoder")
    with pytest.raises(ConfigError, match="no router artifact"):
        empty.load_now()


def test_a_newer_artifact_is_swapped_in_and_a_bad_one_keeps_the_current(tmp_path: Path) -> None:
    make_artifact(tmp_path, "1", skip_threshold=0.2)
    router = router_for(tmp_path, Metrics())
    router.load_now()
    assert router.artifact is not None and router.artifact.metadata.version == "1"
    assert router.reload_if_newer() is False
    make_artifact(tmp_path, "2", created_at="2026-11-29T01:00:00+00:00", skip_threshold=0.7)
    assert latest_artifact_dir(tmp_path) == tmp_path / "router-2"
    assert router.reload_if_newer() is True
    assert router.artifact is not None and router.artifact.metadata.version == "2"
    assert router.status()["skip_threshold"] == 0.7
    make_artifact(tmp_path, "3", created_at="2026-11-29T02:00:00+00:00", dimension=9)
    assert router.reload_if_newer() is False
    assert router.artifact.metadata.version == "2"
    assert "router-3" in json.dumps(router.status()["refused"])


async def test_predictions_run_off_the_loop_and_carry_the_threshold(tmp_path: Path) -> None:
    make_artifact(tmp_path, skip_threshold=0.5)
    router = router_for(tmp_path, Metrics())
    router.load_now()
    request = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    vector = np.zeros(DIMENSION, dtype=np.float32)
    vector[0] = -4.0
    low = await router.predict(vector, request)
    vector[0] = 4.0
    high = await router.predict(vector, request)
    assert low is not None and low.skip and low.artifact_version == "1"
    assert high is not None and not high.skip and len(high.structural) == len(FEATURE_NAMES)
