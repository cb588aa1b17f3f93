"""Forecast accuracy: MASE, sMAPE, WAPE and the interval's coverage, pooled over series.

MASE (Hyndman & Koehler 2006) scales each series' absolute errors by the in-sample mean
absolute error of the seasonal-naive forecast on that series' training steps, so series of
different sizes weigh alike; 1.0 is as good as repeating last season. The benchmark scores a
peer's forecasts with this same code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelmill.config.forecast import SERIES_ID, VALUE
from modelmill.forecasting.base import FORECAST, LOWER, UPPER

__all__ = ["ACTUAL", "CUTOFF", "accuracy", "naive_scales"]

ACTUAL = "actual"  # the observed value beside a forecast, in a scored frame
CUTOFF = "cutoff"  # a backtest's forecast origin, in a scored frame of several


def naive_scales(train: pd.DataFrame, season: int) -> pd.Series:
    """Per series: the mean absolute error of the seasonal-naive forecast within ``train``
    (``unique_id``, ``y``, in time order); the one-step naive error where a series is shorter
    than a season and a step; NaN for a constant series."""
    scales = {}
    for key, rows in train.groupby(SERIES_ID, sort=False):
        values = rows[VALUE].to_numpy(dtype="float64")
        lag = season if len(values) > season else 1
        diffs = np.abs(values[lag:] - values[:-lag]) if len(values) > lag else np.array([])
        scale = float(diffs.mean()) if len(diffs) else float("nan")
        scales[key] = scale if scale > 0 else float("nan")
    return pd.Series(scales, dtype="float64")


def accuracy(scored: pd.DataFrame, scales: pd.Series) -> dict[str, float]:
    """Metrics of forecasts beside their actual values.

    Args:
        scored: ``unique_id``, ``forecast``, ``lower``, ``upper``, ``actual`` (one row per
            series and forecast step), and ``cutoff`` when a backtest's cut-offs are stacked.
        scales: :func:`naive_scales` of the training steps before the forecast: by series, or
            by (series, cut-off) when ``scored`` has a ``cutoff`` column.

    Returns:
        ``mase`` (mean over series — and cut-offs — of the scaled mean absolute error),
        ``smape`` (percent, 0–200), ``wape`` (sum of absolute errors over sum of absolute
        actuals), ``coverage`` (share of actual values inside the interval), ``points``.
    """
    error = (scored[FORECAST] - scored[ACTUAL]).abs()
    keys = [scored[SERIES_ID], scored[CUTOFF]] if CUTOFF in scored.columns else [scored[SERIES_ID]]
    mean_error = error.groupby(keys, sort=False).mean()
    per_series = mean_error / scales.reindex(mean_error.index)
    denominator = scored[FORECAST].abs() + scored[ACTUAL].abs()
    smape = np.where(denominator > 0, 2 * error / denominator.where(denominator > 0, 1), 0.0)
    total = scored[ACTUAL].abs().sum()
    inside = (scored[ACTUAL] >= scored[LOWER]) & (scored[ACTUAL] <= scored[UPPER])
    return {
        "mase": float(per_series.mean()) if per_series.notna().any() else float("nan"),
        "smape": float(100 * np.mean(smape)),
        "wape": float(error.sum() / total) if total > 0 else float("nan"),
        "coverage": float(inside.mean()),
        "points": float(len(scored)),
    }
