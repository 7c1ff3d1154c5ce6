"""Compiled models give scikit-learn's own predictions, from arrays saved beside the joblib (no scikit-learn)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.policy.compiled import Affine, Calibrated, Ensemble, Trees, load_compiled, save_compiled
from router.policy.ensemble import RouterEnsemble
from router.policy.fast_models import accelerated, affine, stacked


def data(rows: int = 400, columns: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, columns)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take each split's learnt side
    y = ((np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) ** 2 + rng.normal(0, 0.5, rows)) > 0.8).astype(np.int64)
    return x, y


def test_stacked_classifier_and_regressor_match_scikit_learn() -> None:
    x, y = data()
    classifier = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0).fit(x, y)
    target = y * 0.7 + np.nan_to_num(x[:, 2])
    regressor = HistGradientBoostingRegressor(max_iter=60, max_depth=4, random_state=0).fit(x, target)
    fresh, _ = data(50)
    trees = stacked(classifier)
    assert np.allclose(trees.predict_proba(fresh), classifier.predict_proba(fresh), atol=1e-12)
    assert np.allclose(trees.decision_function(fresh), classifier.decision_function(fresh), atol=1e-12)
    assert np.allclose(stacked(regressor).decision_function(fresh), regressor.predict(fresh), atol=1e-12)


def test_calibrated_verifiers_of_trees_and_of_a_scaled_logistic_match_scikit_learn() -> None:
    x, y = data()
    filled = np.nan_to_num(x)
    trees = CalibratedClassifierCV(HistGradientBoostingClassifier(max_iter=40, max_depth=3, random_state=0),
                                   method="sigmoid", cv=3).fit(x, y)
    linear = CalibratedClassifierCV(make_pipeline(StandardScaler(), LogisticRegression(C=0.5)),
                                    method="sigmoid", cv=3).fit(filled, y)
    isotonic = CalibratedClassifierCV(LogisticRegression(), method="isotonic", cv=3).fit(filled, y)
    fresh, _ = data(30)
    for model, rows in ((trees, fresh), (linear, np.nan_to_num(fresh))):
        fast = accelerated(model)
        assert isinstance(fast, Calibrated)
        assert np.allclose(fast.predict_proba(rows), model.predict_proba(rows), atol=1e-6)  # float32 scaling
    assert accelerated(isotonic) is isotonic, "what it does not know stays scikit-learn's"
    plain = make_pipeline(StandardScaler(), LogisticRegression()).fit(filled, y)
    assert isinstance(affine(plain), Affine)
    assert np.allclose(affine(plain).predict_proba(filled), plain.predict_proba(filled), atol=1e-6)
    unknown = object()
    assert accelerated(unknown) is unknown


def test_a_compiled_model_round_trips_through_its_file_and_refuses_another_joblib(tmp_path: Path) -> None:
    x, y = data()
    model = CalibratedClassifierCV(HistGradientBoostingClassifier(max_iter=30, random_state=0), cv=3).fit(x, y)
    fast = accelerated(model)
    save_compiled(fast, tmp_path / "compiled.npz", source_sha256="abc")
    loaded = load_compiled(tmp_path / "compiled.npz", source_sha256="abc")
    assert isinstance(loaded, Calibrated) and isinstance(loaded.folds[0][0], Trees)
    assert np.allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-12)
    assert load_compiled(tmp_path / "compiled.npz", source_sha256="another") is None


@pytest.mark.slow  # fits a router ensemble (several seconds)
def test_the_router_ensemble_keeps_its_predictions() -> None:
    x, y = data()
    filled = np.nan_to_num(x)
    ensemble = RouterEnsemble(embedding_dimension=8, neighbours=20).fit(filled, y)
    fresh = np.nan_to_num(data(30)[0])
    before = ensemble.predict_proba(fresh)
    fast = accelerated(ensemble)
    assert isinstance(fast, Ensemble)
    assert np.allclose(fast.predict_proba(fresh), before, atol=1e-6)  # the embedding logistic scales in float32


def test_serving_loads_the_shipped_artifacts_without_scikit_learn() -> None:
    script = """
import sys
import numpy as np
import router.app
from router.assets import shipped_models_dir
from router.embedding.encoder import DIMENSION, MODEL_NAME
from router.policy.classifier import latest_artifact_dir, load_artifact
from router.policy.features import FEATURES_VERSION
from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION
router_dir = latest_artifact_dir(shipped_models_dir())
artifact = load_artifact(router_dir, expected_dimension=DIMENSION, expected_features_version=FEATURES_VERSION,
                         expected_embedding_model=MODEL_NAME)
verifier = load_artifact(latest_artifact_dir(shipped_models_dir(), "verifier-"), expected_dimension=0,
                         expected_features_version=VERIFIER_FEATURES_VERSION,
                         expected_feature_names=VERIFIER_FEATURE_NAMES)
for loaded in (artifact, verifier):
    p = loaded.predict(np.zeros((2, loaded.metadata.n_features), dtype=np.float32))
    assert p.shape == (2,) and ((0 <= p) & (p <= 1)).all()
print(sorted(name for name in sys.modules if name.split(".")[0] in ("sklearn", "scipy")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"scikit-learn or scipy imported: {result.stdout[:300]}"
