"""Predictions as a user sees them: one naming rule for the columns of ``modelmill predict``,
``Pipeline.predict`` and the REST service."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from modelmill.features import DriftResult, DriftConfig, Predictions
from modelmill.features.stats import distribution_drift, distribution_profile, share_drift


def prediction_columns(target: str, class_names: list[str]) -> tuple[str, list[str]]:
    """The names of the predicted value and of each class's probability."""
    return f"{target}_predicted", [f"{target}_probability_{name}" for name in class_names]


def prediction_frame(predictions: Predictions, target: str, index: pd.Index) -> pd.DataFrame:
    """Predictions as columns: ``<target>_predicted`` and ``<target>_probability_<class>``."""
    label, probabilities = prediction_columns(target, predictions.class_names)
    columns: dict[str, Any] = {label: predictions.labels}
    if predictions.proba is not None:
        columns.update(zip(probabilities, predictions.proba.T))
    return pd.DataFrame(columns, index=index)


def prediction_records(predictions: Predictions, target: str, *, decimals: int = 6) -> list[dict[str, Any]]:
    """Predictions as JSON-ready records keyed like :func:`prediction_frame`'s columns
    (probabilities rounded to ``decimals``)."""
    key, keys = prediction_columns(target, predictions.class_names)
    labels = [_plain(v) for v in predictions.labels.tolist()]
    if predictions.proba is None:
        return [{key: label} for label in labels]
    rows = np.asarray(predictions.proba, dtype="float64").round(decimals).tolist()
    return [{key: label, **dict(zip(keys, row))} for label, row in zip(labels, rows)]


def _plain(value: Any) -> Any:
    """JSON-ready scalars: numpy types to Python, NaN to null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------ monitoring

PREDICTION = "prediction"  # the name prediction drift is reported under, beside the columns'


def logged_predictions(frame: pd.DataFrame, target: str, task: str, class_names: list[str]) -> Predictions:
    """Predictions back from their columns in a table (an exported prediction log, the output
    of ``modelmill predict``): the inverse of :func:`prediction_frame`."""
    label, probabilities = prediction_columns(target, class_names)
    labels = frame[label].to_numpy()
    if task == "number":
        values = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype="float64")
        return Predictions(labels=values, codes=values, proba=None, class_names=[])
    index = {name: i for i, name in enumerate(class_names)}
    codes = np.array([index.get(str(v), -1) for v in labels], dtype=np.int64)
    proba = None
    if all(column in frame for column in probabilities):
        proba = frame[probabilities].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64")
    return Predictions(labels=labels, codes=codes, proba=proba, class_names=class_names)


def prediction_profile(task: str, predictions: Predictions) -> dict[str, Any]:
    """Reference statistics of a model's predictions on held-out rows: the distribution of
    the predicted values (regression), of the positive class's probability (binary) and the
    shares of the predicted classes (classifiers)."""
    if task == "number":
        return {"type": "number", "values": distribution_profile(np.asarray(predictions.codes, dtype="float64"))}
    shares = pd.Series([str(v) for v in predictions.labels]).value_counts(normalize=True)
    profile: dict[str, Any] = {"type": task, "classes": {str(k): float(v) for k, v in shares.items()}}
    if predictions.proba is not None and task == "binary":
        profile["score"] = distribution_profile(np.asarray(predictions.proba, dtype="float64")[:, 1])
    # the label-free estimates on these rows: what a window's estimate is compared with (imported
    # here: profiles are made at training, and a serving process imports no evaluation code)
    from modelmill.evaluation.estimate import ESTIMABLE, estimate

    estimates = {metric: estimate(task, metric, np.asarray(predictions.codes), predictions.proba)
                 for metric in sorted(ESTIMABLE.get(task, ()))}
    profile["estimated"] = {metric: value for metric, value in estimates.items() if value is not None}
    return profile


def prediction_drift(reference: dict[str, Any], task: str, predictions: Predictions,
                     thresholds: DriftConfig) -> DriftResult:
    """Prediction drift against a :func:`prediction_profile`: the distance between the
    distributions of predicted values (regression) or of the positive class's probability
    (binary); between the shares of predicted classes (multi-class)."""
    if task == "number":
        return distribution_drift(PREDICTION, reference.get("values") or {}, np.asarray(predictions.codes, "float64"),
                                  thresholds)
    if task == "binary" and predictions.proba is not None and reference.get("score"):
        return distribution_drift(PREDICTION, reference["score"], np.asarray(predictions.proba, "float64")[:, 1],
                                  thresholds)
    counts = pd.Series([str(v) for v in predictions.labels]).value_counts()
    return share_drift(PREDICTION, reference.get("classes") or {}, {str(k): int(v) for k, v in counts.items()},
                       thresholds)
