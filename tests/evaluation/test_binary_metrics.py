"""The binary metrics computed from confusion counts and ranks equal scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from modelmill.evaluation.metrics import compute_metrics


@pytest.mark.parametrize("seed", range(20))
def test_binary_metrics_equal_scikit_learns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(2, 400))
    y = (rng.random(rows) < rng.uniform(0.05, 0.95)).astype(int)
    proba = rng.random(rows)
    if seed % 3 == 0:
        proba = np.round(proba, 1)  # many ties
    if seed % 5 == 0:
        proba[: rows // 3] = 1.0  # probabilities at the edge, clipped for the log loss
    predicted = (proba >= 0.5).astype(int)
    ours = compute_metrics("binary", y, predicted, proba)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted), abs=1e-12)
    assert ours["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted), abs=1e-12)
    assert ours["precision"] == pytest.approx(skm.precision_score(y, predicted, zero_division=0), abs=1e-12)
    assert ours["recall"] == pytest.approx(skm.recall_score(y, predicted, zero_division=0), abs=1e-12)
    assert ours["f1"] == pytest.approx(skm.f1_score(y, predicted, zero_division=0), abs=1e-12)
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1]), rel=1e-9)
    assert ours["confusion_matrix"] == skm.confusion_matrix(y, predicted, labels=[0, 1]).tolist()
    if len(np.unique(y)) == 2:
        assert ours["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba), abs=1e-12)
        assert ours["pr_auc"] == pytest.approx(skm.average_precision_score(y, proba), abs=1e-12)
    else:
        assert "roc_auc" not in ours
