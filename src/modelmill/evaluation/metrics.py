"""Metrics for each task, computed with scikit-learn.

:func:`compute_metrics` returns plain Python values (floats, ints, lists), so the result
goes straight into ``metrics.json`` and the HTML report. Metrics that are undefined for
the data at hand (ROC AUC when ``y_true`` holds a single class, anything that needs
probabilities when none were given) are left out rather than raised on or set to NaN:
a NaN is not valid JSON, and a validation split that happens to hold one class must not
crash a training run.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from modelmill.errors import ConfigError, DataError, ModelError, unknown_choice

def _sklearn_metrics() -> Any:
    """scikit-learn's metrics, imported on first use (~1 s): choosing and checking metric
    names, as config validation and serving do, needs none of it."""
    from sklearn import metrics

    return metrics


# Kept in step with ``modelmill.features.base.Task``; repeated here so that evaluation
# (used by serving and monitoring too) does not have to import torch.
Task = Literal["binary", "category", "number"]
Direction = Literal["max", "min"]

METRIC_NAMES: dict[Task, list[str]] = {
    "binary": [
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "ece",
    ],
    "category": [
        "accuracy",
        "balanced_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
        "roc_auc",
        "log_loss",
    ],
    "number": ["mse", "rmse", "mae", "r2"],
}
"""The scalar metrics each task reports (the names early stopping may watch)."""

_MINIMISED = frozenset({"mse", "rmse", "mae", "log_loss", "loss", "ece"})
_DEFAULTS: dict[Task, str] = {"binary": "roc_auc", "category": "accuracy", "number": "rmse"}


def _all_names() -> set[str]:
    names = {name for task_names in METRIC_NAMES.values() for name in task_names}
    names.add("loss")
    return names


def metric_direction(name: str) -> Direction:
    """Whether a larger (``"max"``) or smaller (``"min"``) value of a metric is better.

    Args:
        name: A metric name from :data:`METRIC_NAMES`, or ``"loss"``.

    Returns:
        ``"min"`` for errors and losses, ``"max"`` for everything else.

    Raises:
        ConfigError: The name is not a known metric.
    """
    if name not in _all_names():
        raise ConfigError(unknown_choice("metric", name, _all_names()))
    return "min" if name in _MINIMISED else "max"


def default_metric(task: Task) -> str:
    """The metric watched when the config says ``auto``.

    Args:
        task: ``"binary"``, ``"category"`` or ``"number"``.

    Returns:
        ``"roc_auc"``, ``"accuracy"`` or ``"rmse"``.
    """
    return _DEFAULTS[task]


def check_metric(task: Task, name: str, path: str = "") -> str:
    """Validate a metric name from the config for a task.

    Args:
        task: The target's task.
        name: The configured name: one of :data:`METRIC_NAMES` for the task, ``"loss"``
            (the validation loss the trainer computes), or ``"auto"``, which resolves
            to :func:`default_metric`.
        path: The dotted config path, for the error message
            (``training.early_stopping.metric``).

    Returns:
        The metric name to watch (``"auto"`` resolved).

    Raises:
        ConfigError: The name is not a metric this task reports; the message lists
            the valid ones.
    """
    if name == "auto":
        return default_metric(task)
    valid = [*METRIC_NAMES[task], "loss"]
    if name not in valid:
        kind = f"metric for a {task} target"
        raise ConfigError(unknown_choice(kind, name, ["auto", *valid]), path=path)
    return name


def compute_metrics(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Compute every metric of a task.

    Args:
        task: ``"binary"``, ``"category"`` or ``"number"``.
        y_true: True values (rows,): class ids ``0..k-1`` (0/1 for binary) or numbers.
        y_pred: Predicted values (rows,), in the same coding as ``y_true``.
        proba: Class probabilities: (rows,) = P(class 1) for binary ((rows, 2) is also
            accepted), (rows, k) for category; ``None`` leaves out the metrics that
            need them. Rows are renormalised to sum to 1 for category.
        labels: Class names in class-id order; stored under ``"labels"`` so that the
            confusion matrix can be read on its own.

    Returns:
        Metric name → plain Python value (JSON-serialisable). Always present:
        ``n_samples``; for classification also ``confusion_matrix`` (list of lists,
        rows = true class, columns = predicted class).

    Raises:
        DataError: There are no rows to evaluate.
        ModelError: Number predictions hold NaN or infinity.
        ValueError: The arrays do not have matching shapes (a caller's bug).
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape[0]} rows but y_pred has {y_pred.shape[0]}")
    if y_true.size == 0:
        raise DataError("there are no rows to evaluate; Fix: give a non-empty evaluation split")
    if task == "number":
        result = _number_metrics(y_true.astype(float), y_pred.astype(float))
    elif task == "binary":
        result = _binary_metrics(y_true.astype(int), y_pred.astype(int), _binary_proba(proba))
    elif task == "category":
        k = _class_count(y_true, y_pred, proba, labels)
        result = _category_metrics(y_true.astype(int), y_pred.astype(int), proba, k)
    else:
        raise ValueError(unknown_choice("task", str(task), _DEFAULTS))
    if labels is not None and task != "number":
        result["labels"] = [str(label) for label in labels]
    result["n_samples"] = int(y_true.size)
    return result


# ---------------------------------------------------------------- per task


def _number_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    skm = _sklearn_metrics()
    if not np.all(np.isfinite(y_pred)):
        raise ModelError(
            "the model predicted NaN or infinity; Fix: lower the learning rate, "
            "scale the target, or set training.grad_clip"
        )
    mse = float(skm.mean_squared_error(y_true, y_pred))
    result: dict[str, Any] = {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
    }
    # R² is undefined for fewer than two rows (sklearn warns and returns NaN).
    if y_true.size >= 2:
        result["r2"] = float(skm.r2_score(y_true, y_pred))
    return result


def _binary_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None
) -> dict[str, Any]:
    """The binary metrics from the confusion counts and the ranks of the probabilities,
    with scikit-learn's definitions (tests/evaluation check them against it): computed
    after every epoch and for every ensemble weighing, where scikit-learn's input checks
    cost ~40 ms a call, most of a small table's training time."""
    tp = int(np.sum((y_pred == 1) & (y_true == 1)))
    fp = int(np.sum((y_pred == 1) & (y_true == 0)))
    fn = int(np.sum((y_pred == 0) & (y_true == 1)))
    tn = int(y_true.size - tp - fp - fn)
    cm = np.array([[tn, fp], [fn, tp]])
    result: dict[str, Any] = {
        "accuracy": (tp + tn) / y_true.size,
        "balanced_accuracy": _balanced_accuracy(cm),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
    }
    if proba is not None:
        _check_proba_rows(proba, y_true.size)
        if _usable(proba):
            if np.unique(y_true).size == 2:
                result["roc_auc"] = _roc_auc(y_true, proba)
                result["pr_auc"] = _average_precision(y_true, proba)
            clipped = np.clip(proba, 0.0, 1.0)
            result["log_loss"] = _log_loss(y_true, clipped)
            result["ece"] = expected_calibration_error(y_true, clipped)
    result["confusion_matrix"] = cm.tolist()
    return result


def _roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """The probability that a positive outranks a negative, ties counting half (the
    Mann-Whitney statistic: the area under the ROC curve)."""
    from scipy.stats import rankdata

    positives = y_true == 1
    n_pos = int(positives.sum())
    n_neg = y_true.size - n_pos
    ranks = rankdata(score)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Precision at each distinct threshold, weighted by the recall it adds."""
    order = np.argsort(-score, kind="mergesort")
    ranked, truth = score[order], y_true[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]  # the last row of each tied score
    tps = np.cumsum(truth)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _log_loss(y_true: np.ndarray, positive: np.ndarray) -> float:
    eps = np.finfo(positive.dtype).eps if np.issubdtype(positive.dtype, np.floating) else np.finfo(float).eps
    p = np.clip(positive.astype(np.float64, copy=False), eps, 1 - eps)
    return float(-np.mean(np.where(y_true == 1, np.log(p), np.log1p(-p))))


def _category_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, k: int
) -> dict[str, Any]:
    skm = _sklearn_metrics()
    classes = list(range(k))
    cm = skm.confusion_matrix(y_true, y_pred, labels=classes)
    result: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": _balanced_accuracy(cm),
    }
    for average in ("macro", "weighted"):
        prf = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=classes, average=average, zero_division=0
        )
        result[f"precision_{average}"] = float(prf[0])
        result[f"recall_{average}"] = float(prf[1])
        result[f"f1_{average}"] = float(prf[2])
    if proba is not None:
        proba = np.asarray(proba, dtype=float)
        _check_proba_rows(proba, y_true.size)
        if proba.ndim != 2 or proba.shape[1] != k:
            raise ValueError(f"proba has shape {proba.shape}; expected ({y_true.size}, {k})")
        if _usable(proba):
            proba = _normalise_rows(proba)
            result.update(_category_proba_metrics(y_true, proba, classes))
    result["confusion_matrix"] = cm.tolist()
    return result


def _category_proba_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: list[int]
) -> dict[str, Any]:
    skm = _sklearn_metrics()
    result: dict[str, Any] = {"log_loss": float(skm.log_loss(y_true, proba, labels=classes))}
    # One-vs-rest AUC needs every class among the true values; a class absent from the
    # split has no positives, so its AUC is undefined and the macro mean with it.
    if np.unique(y_true).size == len(classes) and len(classes) >= 2:
        if len(classes) == 2:  # sklearn treats two classes as binary: wants P(class 1)
            auc = skm.roc_auc_score(y_true, proba[:, 1])
        else:
            auc = skm.roc_auc_score(
                y_true, proba, multi_class="ovr", average="macro", labels=classes
            )
        result["roc_auc"] = float(auc)
    return result


# ---------------------------------------------------------------- helpers


def _balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (as sklearn defines it).

    Computed from the confusion matrix so that a prediction of a class absent from
    ``y_true`` does not raise sklearn's warning at every validation epoch.
    """
    support = cm.sum(axis=1)
    present = support > 0
    recalls = np.diag(cm)[present] / support[present]
    return float(recalls.mean())


def _binary_proba(proba: np.ndarray | None) -> np.ndarray | None:
    """P(class 1) as (rows,), accepting (rows,), (rows, 1) or (rows, 2)."""
    if proba is None:
        return None
    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 2 and proba.shape[1] == 2:
        return proba[:, 1]
    if proba.ndim == 2 and proba.shape[1] == 1:
        return proba[:, 0]
    if proba.ndim != 1:
        raise ValueError(f"binary proba has shape {proba.shape}; expected (rows,) = P(class 1)")
    return proba


def _class_count(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, labels: list[str] | None
) -> int:
    if labels is not None:
        return len(labels)
    if proba is not None and np.ndim(proba) == 2:
        return int(np.shape(proba)[1])
    return int(max(y_true.max(), y_pred.max())) + 1


def _check_proba_rows(proba: np.ndarray, rows: int) -> None:
    if proba.shape[0] != rows:
        raise ValueError(f"proba has {proba.shape[0]} rows but y_true has {rows}")


def _usable(proba: np.ndarray) -> bool:
    """False for probabilities holding NaN/inf (a diverged model): such metrics are left out."""
    return bool(np.all(np.isfinite(proba)))


def _normalise_rows(proba: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and make rows sum to 1: float32 softmax outputs are off by ~1e-7,
    and sklearn's multiclass ROC AUC refuses rows that do not sum to 1."""
    proba = np.clip(proba, 0.0, 1.0)
    sums = proba.sum(axis=1, keepdims=True)
    k = proba.shape[1]
    return np.where(sums > 0, proba / np.where(sums > 0, sums, 1.0), 1.0 / k)


def expected_calibration_error(truth: np.ndarray, positive: np.ndarray, bins: int = 15) -> float:
    """Mean gap between predicted P(positive) and the observed rate, over equal-width bins
    weighted by their rows (Naeini et al., 2015; 15 bins as Guo et al., 2017)."""
    truth, positive = np.asarray(truth, dtype=np.float64), np.asarray(positive, dtype=np.float64)
    which = np.minimum((positive * bins).astype(np.int64), bins - 1)
    rows = np.bincount(which, minlength=bins)
    gaps = np.abs(np.bincount(which, weights=truth, minlength=bins) - np.bincount(which, weights=positive,
                                                                                  minlength=bins))
    return float(gaps.sum() / max(rows.sum(), 1))
