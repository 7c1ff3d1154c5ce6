"""Stacked boosted trees give scikit-learn's own predictions (they replace its per-tree calls at load time)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from router.policy.ensemble import RouterEnsemble
from router.policy.fast_trees import StackedClassifier, StackedRegressor, accelerate


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


@pytest.mark.slow  # fits a router ensemble (several seconds)
def test_accelerate_keeps_the_calibrated_verifier_and_the_router_ensemble_exact() -> None:
    x, y = data()
    calibrated = CalibratedClassifierCV(HistGradientBoostingClassifier(max_iter=40, max_depth=3, random_state=0),
                                        method="sigmoid", cv=3).fit(x, y)
    filled = np.nan_to_num(x)
    ensemble = RouterEnsemble(embedding_dimension=8, neighbours=20).fit(filled, y)
    fresh, _ = data(30)
    before = calibrated.predict_proba(fresh), ensemble.predict_proba(np.nan_to_num(fresh))
    assert accelerate(calibrated) == 3 and accelerate(ensemble) == 2
    assert isinstance(calibrated.calibrated_classifiers_[0].estimator, StackedClassifier)
    assert np.allclose(calibrated.predict_proba(fresh), before[0], atol=1e-12)
    assert np.allclose(ensemble.predict_proba(np.nan_to_num(fresh)), before[1], atol=1e-12)
    assert accelerate(object()) == 0
