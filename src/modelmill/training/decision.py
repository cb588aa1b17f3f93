"""Choosing how a class target decides, on held-out predictions: the calibration map
(``target.calibration``) and the threshold (``target.threshold: auto``, by the lowest total
of ``target.costs`` or the best F1). Fitting uses scikit-learn; applying them is the
target's (NumPy only), so the service and ``modelmill predict`` decide the same way."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modelmill.config.targets import TargetConfig
from modelmill.errors import ConfigError
from modelmill.features import Target
from modelmill.evaluation.metrics import expected_calibration_error
from modelmill.features.calibration import ISOTONIC_MIN_ROWS, Calibrator


def needs_held_out(config: TargetConfig) -> bool:
    """Whether a target of this config chooses something on held-out predictions."""
    return getattr(config, "calibration", "none") != "none" or getattr(config, "threshold", None) == "auto"


def decide(target: Target[Any], raw: torch.Tensor, truth: torch.Tensor, *, where: str) -> dict[str, Any]:
    """Fit the target's calibration and threshold on held-out raw outputs and their
    transformed target; returns what was chosen and measured, for the report."""
    config = target.config
    method = getattr(config, "calibration", "none")
    rows = len(truth)
    if method == "isotonic" and rows < ISOTONIC_MIN_ROWS:
        raise ConfigError(f"isotonic calibration needs at least {ISOTONIC_MIN_ROWS:,} held-out rows and {where} "
                          f"has {rows:,}: with fewer its step function follows their noise. Fix: use calibration: "
                          "sigmoid, or more data", path="target.calibration")
    y = truth.numpy().astype(np.int64)
    if target.task == "binary":
        return _decide_binary(target, raw, y, method)
    if target.task == "category" and method != "none":
        proba = torch.softmax(raw.double(), dim=1).numpy()
        calibrators = [fit_calibrator(method, proba[:, k], (y == k).astype(np.float64))
                       for k in range(proba.shape[1])]
        target.decide(calibrators)  # type: ignore[attr-defined]
        return {"calibration": method, "held-out rows": rows}
    return {}


def _decide_binary(target: Target[Any], raw: torch.Tensor, y: np.ndarray, method: str) -> dict[str, Any]:
    config = target.config
    positive = torch.sigmoid(raw.double().reshape(-1)).numpy()
    report: dict[str, Any] = {"held-out rows": int(len(y))}
    calibrator = None
    if method != "none":
        calibrator = fit_calibrator(method, positive, y.astype(np.float64))
        report["calibration"] = method
        report["held-out ECE before calibration"] = round(expected_calibration_error(y, positive), 4)
        positive = calibrator.apply(positive)
        report["held-out ECE after calibration"] = round(expected_calibration_error(y, positive), 4)
    threshold = None
    if config.threshold == "auto":
        costs = config.costs
        if costs is not None:
            threshold = lowest_cost_threshold(positive, y, costs.false_positive, costs.false_negative)
            report["threshold chosen by"] = (f"the lowest total cost (false positive {costs.false_positive:g}, "
                                             f"false negative {costs.false_negative:g})")
            report["held-out cost at the threshold"] = total_cost(positive, y, threshold, costs.false_positive,
                                                                  costs.false_negative)
            report["held-out cost at 0.5"] = total_cost(positive, y, 0.5, costs.false_positive, costs.false_negative)
        else:
            threshold = best_f1_threshold(positive, y)
            report["threshold chosen by"] = "the best F1"
        report["threshold"] = round(threshold, 6)
    target.decide(threshold, calibrator)  # type: ignore[attr-defined]
    return report


def fit_calibrator(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    """A calibration map of probabilities ``p`` to outcomes ``y`` (0/1)."""
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return Calibrator("isotonic", x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, iso.y_thresholds_)))
    from sklearn.linear_model import LogisticRegression

    logit = np.log(np.clip(p, 1e-12, 1.0)) - np.log(np.clip(1 - p, 1e-12, 1.0))
    if len(np.unique(y)) < 2:
        return Calibrator("sigmoid")  # one class held out: nothing to scale; identity
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(logit.reshape(-1, 1), y.astype(np.int64))
    return Calibrator("sigmoid", slope=float(platt.coef_[0, 0]), intercept=float(platt.intercept_[0]))


def total_cost(positive: np.ndarray, y: np.ndarray, threshold: float, false_positive: float,
               false_negative: float) -> float:
    predicted = positive >= threshold
    return float(false_positive * np.sum(predicted & (y == 0)) + false_negative * np.sum(~predicted & (y == 1)))


def _cuts(positive: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every threshold worth trying (each distinct probability, where a row changes class,
    and 0.5), with the true positives, false positives and false negatives of predicting the
    positive class from it."""
    thresholds = np.unique(np.concatenate([positive, [0.5]]))
    order = np.argsort(positive)
    p, t = positive[order], y[order]
    below = np.searchsorted(p, thresholds, side="left")  # rows predicted negative
    fn = np.concatenate([[0], np.cumsum(t)])[below]
    tp = t.sum() - fn
    fp = (len(t) - below) - tp
    return thresholds, tp, fp, fn


def lowest_cost_threshold(positive: np.ndarray, y: np.ndarray, false_positive: float, false_negative: float) -> float:
    """The threshold with the lowest total cost on these rows."""
    thresholds, _, fp, fn = _cuts(positive, y)
    return _middle_of_best(thresholds, -(false_positive * fp + false_negative * fn))


def best_f1_threshold(positive: np.ndarray, y: np.ndarray) -> float:
    """The threshold of the best F1 on these rows."""
    thresholds, tp, fp, fn = _cuts(positive, y)
    return _middle_of_best(thresholds, np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0))


def _middle_of_best(thresholds: np.ndarray, value: np.ndarray) -> float:
    """Halfway between the first best candidate and the one below it: every threshold in that
    gap decides the held-out rows alike (no probability lies inside it), and its middle is not
    pressed against one row's probability."""
    best = int(np.flatnonzero(value >= value.max() - 1e-12)[0])
    chosen = (thresholds[best - 1] + thresholds[best]) / 2 if best > 0 else thresholds[best]
    return float(np.clip(chosen, 1e-6, 1 - 1e-6))
