"""A model's performance per window: realised, from the labels that arrived, with a
bootstrap confidence interval (the metrics are the evaluation's own, ``compute_metrics``);
estimated, before labels arrive, from the predicted probabilities of a classifier.

The estimate is confidence-based performance estimation (CBPE, as NannyML names it): when
the probabilities are calibrated, a row predicted positive with probability p is a true
positive with probability p and a false positive with 1 − p, so the expected confusion
matrix, and every metric made from it, follows from the probabilities alone; the expected
ROC curve weighs each row as p of a positive and 1 − p of a negative. It holds while the
probabilities stay calibrated, that is while the inputs stay where the model learned its
calibration: a window whose inputs leave the training range is flagged ``extrapolating``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from modelmill.evaluation.metrics import compute_metrics
from modelmill.features import Predictions

ESTIMABLE: dict[str, frozenset[str]] = {
    "binary": frozenset({"accuracy", "precision", "recall", "f1", "roc_auc"}),
    "category": frozenset({"accuracy", "roc_auc"}),
    "number": frozenset(),
}


@dataclass(frozen=True)
class Realised:
    """A metric on a window's labelled rows and its bootstrap interval."""

    value: float
    low: float | None
    high: float | None
    rows: int


def metric_of(task: str, metric: str, truth: np.ndarray, predictions: Predictions) -> float | None:
    """One metric of predictions against true codes, by the evaluation's code; None where
    it is undefined for these rows (a single class for ROC-AUC)."""
    proba = predictions.proba
    if task == "binary" and proba is not None:
        proba = proba[:, 1]
    values = compute_metrics(task, truth, np.asarray(predictions.codes), proba,  # type: ignore[arg-type]
                             predictions.class_names or None)
    value = values.get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def realised(task: str, metric: str, truth: np.ndarray, predictions: Predictions, *, confidence: float,
             resamples: int, seed: int = 0) -> Realised | None:
    """The metric on these rows, with a percentile bootstrap interval at ``confidence``."""
    value = metric_of(task, metric, truth, predictions)
    if value is None:
        return None
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        picked = rng.integers(0, truth.size, truth.size)
        sample = Predictions(labels=predictions.labels[picked], codes=np.asarray(predictions.codes)[picked],
                             proba=None if predictions.proba is None else predictions.proba[picked],
                             class_names=predictions.class_names)
        drawn = metric_of(task, metric, truth[picked], sample)
        if drawn is not None:
            draws.append(drawn)
    if len(draws) < resamples // 2:  # most resamples undefined: no honest interval
        return Realised(value, None, None, int(truth.size))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Realised(value, float(low), float(high), int(truth.size))


def estimated(task: str, metric: str, predictions: Predictions) -> float | None:
    """The metric expected from the predicted probabilities alone (no labels); None for a
    metric or task it cannot be estimated for (regression, log loss …)."""
    proba = predictions.proba
    if proba is None or metric not in ESTIMABLE.get(task, frozenset()) or not len(proba):
        return None
    proba = np.clip(np.nan_to_num(np.asarray(proba, dtype=np.float64), nan=0.0), 0.0, 1.0)
    proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
    codes = np.asarray(predictions.codes)
    if task == "binary":
        positive = proba[:, 1]
        if metric == "roc_auc":
            return expected_roc_auc(positive)
        predicted = codes == 1
        tp, fp = positive[predicted].sum(), (1 - positive[predicted]).sum()
        fn, tn = positive[~predicted].sum(), (1 - positive[~predicted]).sum()
        if metric == "accuracy":
            return float((tp + tn) / len(positive))
        if metric == "precision":
            return float(tp / (tp + fp)) if tp + fp > 0 else 0.0
        if metric == "recall":
            return float(tp / (tp + fn)) if tp + fn > 0 else 0.0
        return float(2 * tp / (2 * tp + fp + fn)) if tp > 0 else 0.0
    if metric == "accuracy":  # the probability of the class predicted is that of being right
        rows = np.arange(len(codes))
        return float(proba[rows, np.clip(codes, 0, proba.shape[1] - 1)].mean())
    aucs = [expected_roc_auc(proba[:, k]) for k in range(proba.shape[1])]  # one against the rest, macro
    known = [a for a in aucs if a is not None]
    return float(np.mean(known)) if len(known) == len(aucs) else None


def expected_roc_auc(positive: np.ndarray) -> float | None:
    """Area under the expected ROC curve: rows ranked by their probability, each counted as
    p of a positive and 1 − p of a negative (tied probabilities form one step)."""
    total_positive, total_negative = positive.sum(), (1 - positive).sum()
    if total_positive <= 0 or total_negative <= 0:
        return None
    order = np.argsort(-positive, kind="mergesort")
    ranked = positive[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]  # the last row of each tied score
    tpr = np.r_[0.0, np.cumsum(ranked)[last] / total_positive]
    fpr = np.r_[0.0, np.cumsum(1 - ranked)[last] / total_negative]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
