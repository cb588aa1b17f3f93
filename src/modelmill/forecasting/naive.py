"""``seasonal_naive``: each forecast step repeats the value one season earlier.

The floor every other model must beat (MASE 1.0 is its in-sample error). Written by hand
because it is the definition (Hyndman & Athanasopoulos, *Forecasting: Principles and
Practice*, 3rd ed., §5.2 and §5.5); a library would add nothing but a dependency.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Self

import numpy as np
import pandas as pd

from modelmill.config.forecast import SERIES_ID, TIME, VALUE, ForecastConfig, SeasonalNaiveConfig
from modelmill.errors import ModelError
from modelmill.forecasting.base import FORECAST, FORECASTERS, LOWER, UPPER, FitContext, Forecaster, ForecasterState
from modelmill.forecasting.panel import Panel, future_steps

__all__ = ["SeasonalNaive", "forecast_frame", "normal_quantile", "seasonal_steps", "residual_sigma"]


def normal_quantile(coverage: float) -> float:
    """z such that ±z σ holds ``coverage`` of a normal distribution (1.2816 for 0.8)."""
    return NormalDist().inv_cdf(0.5 + coverage / 2)


def seasonal_steps(horizon: int, season: int) -> np.ndarray:
    """k + 1 = floor((h − 1) / m) + 1 for h = 1 … horizon: how many seasons back each step's
    value lies; FPP3 §5.5 widens the seasonal-naive σ by sqrt(k + 1)."""
    return (np.arange(horizon) // season + 1).astype("float64")  # (horizon,)


def residual_sigma(values: np.ndarray, lag: int) -> float:
    """Root mean square of the in-sample residuals y_t − y_{t−lag} (centred on zero: the interval
    is centred on the forecast, so a biased residual should widen it, not shift it); 0 where the
    series is too short to have a residual."""
    residuals = values[lag:] - values[:-lag] if len(values) > lag else np.zeros(0)
    return float(np.sqrt(np.mean(residuals ** 2))) if len(residuals) else 0.0


def forecast_frame(key: str, times: pd.DatetimeIndex, mean: np.ndarray, lower: np.ndarray,
                   upper: np.ndarray) -> pd.DataFrame:
    """One series' forecast in the contract's columns (each array: (horizon,))."""
    return pd.DataFrame({SERIES_ID: key, TIME: times, FORECAST: np.asarray(mean, dtype="float64"),
                         LOWER: np.asarray(lower, dtype="float64"), UPPER: np.asarray(upper, dtype="float64")})


def stack_forecasts(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The series' forecasts in one frame (empty, with the columns, when there are none)."""
    if not frames:
        return pd.DataFrame({SERIES_ID: pd.Series(dtype="object"), TIME: pd.Series(dtype="datetime64[ns]"),
                             FORECAST: [], LOWER: [], UPPER: []})
    return pd.concat(frames, ignore_index=True)


class SeasonalNaive(Forecaster):
    """ŷ_{T+h} = y_{T+h−m(k+1)}, k = floor((h−1)/m): the last season repeated.

    The interval is normal around it, with σ̂ the root mean square of the in-sample residuals
    y_t − y_{t−m} of each fitted series, widened to σ̂·sqrt(k+1) at step h (FPP3 §5.5). A series
    shorter than a season and a step repeats its last value instead (the naive method, m = 1:
    σ̂·sqrt(h)), and says so in :meth:`describe`. A series the fit did not see takes its σ̂ from
    the history it is forecast from (nothing else is learned). Covariates are not used.
    """

    kind = "seasonal_naive"

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__(config)
        self.season_: int | None = None
        self.sigmas_: dict[str, tuple[int, float]] = {}  # series → (lag, σ̂)

    def fit(self, train: Panel, context: FitContext) -> Self:
        self.season_ = train.season
        self.sigmas_ = {}
        for key, rows in train.series():
            values = rows[VALUE].to_numpy(dtype="float64")
            lag = self._lag(len(values))
            self.sigmas_[key] = (lag, residual_sigma(values, lag))
        return self

    def _lag(self, length: int) -> int:
        season = self._season()
        return season if length > season else 1

    def _season(self) -> int:
        if self.season_ is None:
            raise ModelError("seasonal_naive is not fitted yet. Fix: call fit(train) before forecast or state")
        return self.season_

    def forecast(self, history: Panel, future: pd.DataFrame) -> pd.DataFrame:
        """The last season repeated for ``config.series.horizon`` steps after each series'
        last step (``future`` is not read: the method takes no covariates)."""
        z = normal_quantile(self.interval)
        frames = []
        for key, rows in history.series():
            values = rows[VALUE].to_numpy(dtype="float64")
            lag = self._lag(len(values))
            fitted = self.sigmas_.get(key)
            sigma = fitted[1] if fitted is not None and fitted[0] == lag else residual_sigma(values, lag)
            steps = np.arange(self.horizon)  # (horizon,)
            mean = values[len(values) - lag + steps % lag]  # the value one (or k+1) seasons back
            width = z * sigma * np.sqrt(seasonal_steps(self.horizon, lag))
            times = future_steps(rows[TIME].iloc[-1], history.frequency, self.horizon)
            frames.append(forecast_frame(key, times, mean, mean - width, mean + width))
        return stack_forecasts(frames)

    def needed_history(self) -> int:
        return self._season()

    def state(self) -> ForecasterState:
        return ForecasterState(json={"season": self._season(), "sigmas": {
            key: {"lag": lag, "sigma": sigma} for key, (lag, sigma) in self.sigmas_.items()}})

    @classmethod
    def from_state(cls, config: ForecastConfig, state: ForecasterState) -> Self:
        made = cls(config)
        try:
            made.season_ = int(state.json["season"])
            made.sigmas_ = {str(k): (int(v["lag"]), float(v["sigma"])) for k, v in state.json["sigmas"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the saved seasonal_naive state is malformed ({exc!r}). Fix: refit and save the "
                             "bundle again") from None
        return made

    def describe(self) -> dict[str, Any]:
        season = self._season()
        short = sorted(key for key, (lag, _) in self.sigmas_.items() if lag != season)
        described: dict[str, Any] = {"season": season, "series": len(self.sigmas_)}
        if short:
            why = f"no longer than a season ({season} steps): the last value is repeated"
            described["naive_instead"] = {"series": short[:20], "count": len(short), "why": why}
        finite = [sigma for _, sigma in self.sigmas_.values() if math.isfinite(sigma)]
        described["mean_sigma"] = float(np.mean(finite)) if finite else None
        return described


FORECASTERS.add("seasonal_naive", SeasonalNaive, config=SeasonalNaiveConfig)
