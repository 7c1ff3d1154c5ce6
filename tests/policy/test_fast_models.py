"""The fast predictors give scikit-learn's own predictions (they replace its per-call overhead at load time)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.policy.ensemble import RouterEnsemble
from router.policy.fast_models import (
    AffineClassifier,
    SigmoidCalibrated,
    StackedClassifier,
    StackedRegressor,
    accelerated,
)


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
    stacked = StackedClassifier(classifier)
    assert np.allclose(stacked.predict_proba(fresh), classifier.predict_proba(fresh), atol=1e-12)
    assert (stacked.predict(fresh) == classifier.predict(fresh)).all()
    assert np.allclose(StackedRegressor(regressor).predict(fresh), regressor.predict(fresh), atol=1e-12)


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
        assert isinstance(fast, SigmoidCalibrated)
        assert np.allclose(fast.predict_proba(rows), model.predict_proba(rows), atol=1e-12)
    assert accelerated(isotonic) is isotonic, "what it does not know stays scikit-learn's"
    plain = make_pipeline(StandardScaler(), LogisticRegression()).fit(filled, y)
    assert np.allclose(AffineClassifier(plain).predict_proba(filled), plain.predict_proba(filled), atol=1e-12)
    assert accelerated(object()) is not None


@pytest.mark.slow  # fits a router ensemble (several seconds)
def test_the_router_ensemble_keeps_its_predictions() -> None:
    x, y = data()
    filled = np.nan_to_num(x)
    ensemble = RouterEnsemble(embedding_dimension=8, neighbours=20).fit(filled, y)
    fresh = np.nan_to_num(data(30)[0])
    before = ensemble.predict_proba(fresh)
    fast = accelerated(ensemble)
    assert fast is ensemble and isinstance(ensemble.members_["trees"], StackedClassifier)
    assert isinstance(ensemble.members_["linear"], AffineClassifier)
    assert isinstance(ensemble.calibrator_, AffineClassifier)
    assert np.allclose(ensemble.predict_proba(fresh), before, atol=1e-12)
