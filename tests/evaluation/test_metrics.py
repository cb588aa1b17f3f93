"""Metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modelmill.errors import ConfigError, DataError, ModelError
from modelmill.evaluation.metrics import (
    METRIC_NAMES,
    check_metric,
    compute_metrics,
    default_metric,
    metric_direction,
)

# ---------------------------------------------------------------- binary

# TN=1 FP=1 FN=0 TP=2
Y_TRUE = np.array([0, 0, 1, 1])
Y_PRED = np.array([0, 1, 1, 1])
# Ranked: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg)
P1 = np.array([0.1, 0.8, 0.7, 0.9])


def test_binary_matches_hand_computed_values() -> None:
    m = compute_metrics("binary", Y_TRUE, Y_PRED, P1, ["no", "yes"])
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    # 3 of the 4 (positive, negative) pairs are ranked correctly.
    assert m["roc_auc"] == pytest.approx(0.75)
    # Precision 1 at recall 0.5, precision 2/3 at recall 1.
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    expected_log_loss = -(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.9)) / 4
    assert m["log_loss"] == pytest.approx(expected_log_loss)
    assert m["labels"] == ["no", "yes"]
    assert m["n_samples"] == 4


def test_binary_accepts_two_column_proba() -> None:
    one = compute_metrics("binary", Y_TRUE, Y_PRED, P1)
    two = compute_metrics("binary", Y_TRUE, Y_PRED, np.column_stack([1 - P1, P1]))
    assert one == two


def test_binary_reports_every_listed_metric_as_plain_floats() -> None:
    m = compute_metrics("binary", Y_TRUE, Y_PRED, P1)
    for name in METRIC_NAMES["binary"]:
        assert type(m[name]) is float, name
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)
    json.dumps(m, allow_nan=False)


@pytest.mark.filterwarnings("error")
def test_binary_single_class_omits_auc_without_crash_or_warning() -> None:
    m = compute_metrics("binary", np.array([0, 0, 0]), np.array([0, 1, 0]), np.array([0.1, 0.6, 0.2]))
    assert "roc_auc" not in m and "pr_auc" not in m
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["precision"] == 0.0  # no true positives, zero_division=0
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)  # mean recall over present classes
    assert m["confusion_matrix"] == [[2, 1], [0, 0]]
    assert "log_loss" in m
    json.dumps(m, allow_nan=False)


def test_binary_without_proba_leaves_out_probability_metrics() -> None:
    m = compute_metrics("binary", Y_TRUE, Y_PRED)
    assert {"roc_auc", "pr_auc", "log_loss"}.isdisjoint(m)
    assert m["accuracy"] == pytest.approx(0.75)


def test_binary_non_finite_proba_leaves_out_probability_metrics() -> None:
    m = compute_metrics("binary", Y_TRUE, Y_PRED, np.array([0.1, np.nan, 0.7, 0.9]))
    assert {"roc_auc", "pr_auc", "log_loss"}.isdisjoint(m)
    json.dumps(m, allow_nan=False)


# ---------------------------------------------------------------- category

C_TRUE = np.array([0, 1, 2, 2, 1, 0])
C_PRED = np.array([0, 2, 2, 2, 1, 0])
C_PROBA = np.array([
    [0.8, 0.1, 0.1],
    [0.2, 0.3, 0.5],
    [0.1, 0.1, 0.8],
    [0.2, 0.2, 0.6],
    [0.1, 0.7, 0.2],
    [0.6, 0.3, 0.1],
])


def test_category_matches_hand_computed_values() -> None:
    m = compute_metrics("category", C_TRUE, C_PRED, C_PROBA, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["precision_macro"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert m["recall_macro"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3 + 0.8) / 3)
    # Every class has support 2, so weighted == macro.
    assert m["precision_weighted"] == pytest.approx(m["precision_macro"])
    assert m["recall_weighted"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx(5 / 6)
    truth_p = C_PROBA[np.arange(6), C_TRUE]
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(truth_p)))
    assert 0.5 < m["roc_auc"] <= 1.0
    for name in METRIC_NAMES["category"]:
        assert type(m[name]) is float, name
    json.dumps(m, allow_nan=False)


def test_category_perfect_ranking_has_auc_one() -> None:
    proba = np.eye(3)[C_TRUE] * 0.7 + 0.1
    m = compute_metrics("category", C_TRUE, C_TRUE, proba)
    assert m["roc_auc"] == pytest.approx(1.0)


@pytest.mark.filterwarnings("error")
def test_category_missing_class_omits_auc_and_keeps_log_loss() -> None:
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.3, 0.4, 0.3], [0.5, 0.4, 0.1]])
    m = compute_metrics("category", y, proba.argmax(axis=1), proba, ["a", "b", "c"])
    assert "roc_auc" not in m
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.4, 0.5])))
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_category_with_two_classes_and_unnormalised_float32_rows() -> None:
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.9, 0.1000001], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4]], dtype=np.float32)
    m = compute_metrics("category", y, proba.argmax(axis=1), proba)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(1.0)


def test_category_proba_of_the_wrong_width_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"expected \(6, 3\)"):
        compute_metrics("category", C_TRUE, C_PRED, C_PROBA[:, :2], ["a", "b", "c"])


# ---------------------------------------------------------------- number


def test_number_matches_hand_computed_values() -> None:
    m = compute_metrics("number", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]))
    assert m["mse"] == pytest.approx(1.0)  # errors 0, 0, 0, 2 → 4 / 4
    assert m["rmse"] == pytest.approx(1.0)
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 4 / 5)  # SS_tot = 2.25 + 0.25 + 0.25 + 2.25
    assert "confusion_matrix" not in m
    assert set(METRIC_NAMES["number"]) <= set(m)
    json.dumps(m, allow_nan=False)


def test_number_rmse_of_a_known_vector() -> None:
    m = compute_metrics("number", np.zeros(4), np.array([3.0, -3.0, 4.0, -4.0]))
    assert m["rmse"] == pytest.approx(math.sqrt((9 + 9 + 16 + 16) / 4))


@pytest.mark.filterwarnings("error")
def test_number_single_row_omits_r2() -> None:
    m = compute_metrics("number", np.array([2.0]), np.array([3.0]))
    assert "r2" not in m and m["mae"] == pytest.approx(1.0)


def test_number_nan_prediction_is_a_model_error_with_a_fix() -> None:
    with pytest.raises(ModelError, match="NaN or infinity; Fix:"):
        compute_metrics("number", np.array([1.0, 2.0]), np.array([1.0, np.nan]))


# ---------------------------------------------------------------- shapes


def test_no_rows_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no rows to evaluate"):
        compute_metrics("binary", np.array([], dtype=int), np.array([], dtype=int))


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="y_true has 4 rows but y_pred has 3"):
        compute_metrics("binary", Y_TRUE, Y_PRED[:3])
    with pytest.raises(ValueError, match="proba has 3 rows"):
        compute_metrics("binary", Y_TRUE, Y_PRED, P1[:3])


# ---------------------------------------------------------------- names


def test_default_metric_per_task() -> None:
    assert default_metric("binary") == "roc_auc"
    assert default_metric("category") == "accuracy"
    assert default_metric("number") == "rmse"
    for task in ("binary", "category", "number"):
        assert default_metric(task) in METRIC_NAMES[task]


def test_metric_direction() -> None:
    for name in ("accuracy", "roc_auc", "pr_auc", "f1_macro", "r2", "balanced_accuracy"):
        assert metric_direction(name) == "max"
    for name in ("mse", "rmse", "mae", "log_loss", "loss"):
        assert metric_direction(name) == "min"
    with pytest.raises(ConfigError, match="unknown metric 'acuracy' \\(did you mean 'accuracy'\\?\\)"):
        metric_direction("acuracy")


def test_every_listed_metric_has_a_direction() -> None:
    for names in METRIC_NAMES.values():
        for name in names:
            assert metric_direction(name) in ("max", "min")


def test_check_metric_resolves_auto_and_accepts_loss() -> None:
    assert check_metric("binary", "auto") == "roc_auc"
    assert check_metric("number", "loss") == "loss"
    assert check_metric("category", "f1_macro") == "f1_macro"


def test_check_metric_names_the_path_the_value_and_the_choices() -> None:
    path = "training.early_stopping.metric"
    with pytest.raises(ConfigError) as caught:
        check_metric("binary", "roc_acu", path)
    message = str(caught.value)
    assert message.startswith(f"{path}: unknown metric for a binary target 'roc_acu'")
    assert "did you mean 'roc_auc'?" in message
    assert "pr_auc" in message and "loss" in message
    assert caught.value.path == path
    with pytest.raises(ConfigError, match="unknown metric for a number target 'accuracy'"):
        check_metric("number", "accuracy", path)
