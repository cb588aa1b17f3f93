"""A classifier's performance estimated without labels, from its predicted probabilities.

The estimate is confidence-based performance estimation (CBPE, as NannyML names it): when
the probabilities are calibrated, a row predicted positive with probability p is a true
positive with probability p and a false positive with 1 − p, so the expected confusion
matrix, and every metric made from it, follows from the probabilities alone; the expected
ROC curve weighs each row as p of a positive and 1 − p of a negative. It holds while the
probabilities stay calibrated, that is while the inputs stay where the model learned its
calibration: a window whose inputs leave the training range is flagged ``extrapolating``.
A model whose probabilities are not well calibrated gets a biased estimate; so monitoring
judges decay by how the estimate moved from its value on the held-out rows at training
(kept in the bundle's profile), not by its distance from the realised test figure.
"""

from __future__ import annotations

import numpy as np

ESTIMABLE: dict[str, frozenset[str]] = {
    "binary": frozenset({"accuracy", "precision", "recall", "f1", "roc_auc"}),
    "category": frozenset({"accuracy", "roc_auc"}),
    "number": frozenset(),
}


def estimate(task: str, metric: str, codes: np.ndarray, proba: np.ndarray | None) -> float | None:
    """The metric expected from predicted classes (``codes``) and class probabilities
    (rows, classes) alone; None for a metric or task it cannot be estimated for
    (regression, log loss …)."""
    if proba is None or metric not in ESTIMABLE.get(task, frozenset()) or not len(proba):
        return None
    proba = np.clip(np.nan_to_num(np.asarray(proba, dtype=np.float64), nan=0.0), 0.0, 1.0)
    proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
    codes = np.asarray(codes)
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
