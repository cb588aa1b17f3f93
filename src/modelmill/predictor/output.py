"""Predictions as a user sees them: one naming rule for the columns of ``modelmill predict``,
``Pipeline.predict`` and the REST service."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from modelmill.features import Predictions


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
