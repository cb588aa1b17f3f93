"""Challenger against champion on the same rows: the gain in the followed metric with a
paired bootstrap interval (both models resampled on the same rows, so that what the rows
have in common cancels out), and the verdict of the promotion rule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelmill.evaluation.metrics import metric_direction
from modelmill.features import Predictions
from modelmill.monitoring.decay import bootstrap_interval, metric_of


@dataclass(frozen=True)
class Comparison:
    """The followed metric of both models on the same rows. ``gain`` is signed so that a
    positive gain is better (the champion's error minus the challenger's, for errors);
    ``low`` and ``high`` bound it at the bootstrap's confidence (None without a bootstrap)."""

    metric: str
    rows: int
    champion: float
    challenger: float
    gain: float
    low: float | None = None
    high: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def signed_gain(metric: str, champion: float, challenger: float) -> float:
    return challenger - champion if metric_direction(metric) == "max" else champion - challenger


def compare(task: str, metric: str, truth: np.ndarray, champion: Predictions, challenger: Predictions, *,
            confidence: float | None = None, resamples: int = 0, seed: int = 0) -> Comparison:
    """Both models' metric on ``truth`` and the gain; with ``resamples``, its paired
    percentile bootstrap interval at ``confidence``.

    Raises:
        ValueError: the metric is undefined on these rows (one class only, for ROC-AUC).
    """
    first, second = metric_of(task, metric, truth, champion), metric_of(task, metric, truth, challenger)
    if first is None or second is None:
        raise ValueError(f"{metric} is undefined on these {truth.size} rows (a single class?)")
    comparison = Comparison(metric, int(truth.size), first, second, signed_gain(metric, first, second))
    if not resamples or confidence is None:
        return comparison

    def gain(picked: np.ndarray) -> float | None:  # both models on the same resample: paired
        a = metric_of(task, metric, truth[picked], champion.rows(picked))
        b = metric_of(task, metric, truth[picked], challenger.rows(picked))
        return None if a is None or b is None else signed_gain(metric, a, b)

    interval = bootstrap_interval(gain, int(truth.size), confidence=confidence, resamples=resamples, seed=seed)
    if interval is None:
        return comparison
    return Comparison(metric, comparison.rows, first, second, comparison.gain, *interval)


def worse_beyond(metric: str, comparison: Comparison, tolerance: float) -> bool:
    """Whether the challenger is worse than the champion by more than ``tolerance``
    (absolute for scores, relative to the champion's error for errors)."""
    if metric_direction(metric) == "max":
        return comparison.gain < -tolerance
    scale = abs(comparison.champion) if comparison.champion and math.isfinite(comparison.champion) else 1.0
    return comparison.gain < -tolerance * scale


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def judge(recent: Comparison, test: Comparison, *, margin: float, tolerance: float, confidence: float) -> Verdict:
    """The promotion rule: better on the recent rows by a gain whose interval's lower end
    passes ``margin``, and not worse on the original test split beyond ``tolerance``."""
    level = f"{confidence:.0%}"
    if recent.low is None:
        return Verdict(False, f"the gain in {recent.metric} on the {recent.rows} held-back records has no "
                       "bootstrap interval (the metric is undefined on most resamples): too few records")
    interval = f"{recent.gain:+.4f} ({level} interval {recent.low:+.4f} to {recent.high:+.4f})"
    if recent.low <= margin:
        what = "does not exclude zero" if margin == 0 else f"does not pass the margin {margin}"
        return Verdict(False, f"not better on the {recent.rows} held-back recent records: {recent.metric} gain "
                       f"{interval} {what}")
    if worse_beyond(test.metric, test, tolerance):
        return Verdict(False, f"better on the recent records ({interval}) but worse on the original test split: "
                       f"{test.metric} {test.challenger:.4f} against the champion's {test.champion:.4f}, "
                       f"beyond the tolerance {tolerance}")
    return Verdict(True, f"better on the {recent.rows} held-back recent records: {recent.metric} gain {interval}; "
                   f"original test split {test.challenger:.4f} against {test.champion:.4f} (tolerance {tolerance})")
