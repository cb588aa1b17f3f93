"""Combining forecasts and calibrating their interval: the arithmetic ``auto`` applies to its
candidates' forecasts (why these rules: ``modelmill.forecasting.auto``'s docstring)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from modelmill.config.forecast import SERIES_ID, TIME
from modelmill.errors import ModelError
from modelmill.forecasting.base import FORECAST, LOWER, UPPER
from modelmill.forecasting.metrics import ACTUAL

__all__ = ["interval_scale", "mase_weights", "mean_forecast", "rescaled"]


def mase_weights(mases: list[float]) -> list[float]:
    """Weights ∝ 1 / MASE², summing to 1 (a perfect candidate, MASE 0, takes them all)."""
    perfect = [mase <= 0 for mase in mases]
    if any(perfect):
        return [float(p) / sum(perfect) for p in perfect]
    inverse = [1 / mase ** 2 for mase in mases]
    return [value / sum(inverse) for value in inverse]


def mean_forecast(frames: list[pd.DataFrame], weights: list[float]) -> pd.DataFrame:
    """The weighted mean of several forecasts of the same steps: point forecasts and bounds
    alike (the first frame's rows, order and other columns)."""
    first = frames[0]
    if len(frames) == 1:
        return first
    keys = pd.MultiIndex.from_frame(first[[SERIES_ID, TIME]])
    out = first.copy()
    for column in (FORECAST, LOWER, UPPER):
        values = [first[column].to_numpy(dtype="float64")]
        for other in frames[1:]:
            indexed = other.set_index([SERIES_ID, TIME])[column]
            positions = indexed.index.get_indexer(keys)
            if len(other) != len(first) or (positions < 0).any():
                raise ModelError("auto: the combined forecasters forecast different steps. Fix: report this as a bug")
            values.append(indexed.to_numpy(dtype="float64")[positions])
        out[column] = np.average(values, axis=0, weights=weights)
    return out


def interval_scale(scored: pd.DataFrame, coverage: float) -> float:
    """The factor by which the interval's half-widths (each side apart, about the forecast) must
    be multiplied to hold ``coverage`` of the actual values in ``scored``: the conformal
    quantile — the ⌈(n + 1) · coverage⌉-th smallest of the n points (the largest, if fewer) — of
    each point's distance from the forecast over the half-width on its side. NaN where no point
    has a half-width to scale."""
    forecast, actual = scored[FORECAST].to_numpy(dtype="float64"), scored[ACTUAL].to_numpy(dtype="float64")
    above = actual >= forecast
    width = np.where(above, scored[UPPER].to_numpy(dtype="float64") - forecast,
                     forecast - scored[LOWER].to_numpy(dtype="float64"))
    usable = np.isfinite(width) & (width > 0) & np.isfinite(actual)
    if not usable.any():
        return math.nan
    ratios = np.sort(np.abs(actual - forecast)[usable] / width[usable])
    rank = min(len(ratios), math.ceil((len(ratios) + 1) * coverage))  # the rank-th smallest ratio
    return float(ratios[rank - 1])


def rescaled(forecasts: pd.DataFrame, scale: float) -> pd.DataFrame:
    """``forecasts`` with each bound moved ``scale`` times as far from the forecast."""
    if scale == 1.0:
        return forecasts
    out = forecasts.copy()
    out[UPPER] = out[FORECAST] + scale * (out[UPPER] - out[FORECAST]).clip(lower=0)
    out[LOWER] = out[FORECAST] - scale * (out[FORECAST] - out[LOWER]).clip(lower=0)
    return out
