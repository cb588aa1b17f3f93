"""A model's performance per window: realised, from the labels that arrived, with a
bootstrap confidence interval (the metrics are the evaluation's own, ``compute_metrics``);
estimated, before labels arrive, from the predicted probabilities of a classifier
(:mod:`modelmill.evaluation.estimate`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modelmill.evaluation.estimate import ESTIMABLE, estimate
from modelmill.evaluation.metrics import compute_metrics
from modelmill.features import Predictions



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
    interval = bootstrap_interval(lambda picked: metric_of(task, metric, truth[picked], predictions.rows(picked)),
                                  int(truth.size), confidence=confidence, resamples=resamples, seed=seed)
    low, high = interval or (None, None)
    return Realised(value, low, high, int(truth.size))


def bootstrap_interval(statistic: Callable[[np.ndarray], float | None], rows: int, *, confidence: float,
                       resamples: int, seed: int = 0) -> tuple[float, float] | None:
    """The percentile bootstrap interval of ``statistic`` (of the positions of a resample of
    ``rows`` rows) at ``confidence``; None when it is undefined on most resamples."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        drawn = statistic(rng.integers(0, rows, rows))
        if drawn is not None:
            draws.append(drawn)
    if len(draws) < resamples // 2:  # most resamples undefined: no honest interval
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def estimated(task: str, metric: str, predictions: Predictions) -> float | None:
    """The metric expected from the predicted probabilities alone (no labels); None for a
    metric or task it cannot be estimated for (regression, log loss …)."""
    return estimate(task, metric, np.asarray(predictions.codes), predictions.proba)


__all__ = ["ESTIMABLE", "Realised", "bootstrap_interval", "estimated", "metric_of", "realised"]
