"""A fitted forecast from a bundle: the forecaster, the step of the series, and the recent
history of every series it was fitted on (``series.keep`` steps each), so that a forecast can
name a series instead of sending its history. What ``predict``, ``load`` and the service use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelmill.bundle import Bundle
from modelmill.bundle.layout import MAIN_MODEL
from modelmill.bundle.weights import parse_weights
from modelmill.config.forecast import SERIES_ID, TIME, VALUE, ForecastConfig
from modelmill.errors import BundleError, DataError
from modelmill.forecasting.base import FORECAST, LOWER, UPPER, Forecaster, ForecasterState
from modelmill.forecasting.panel import Panel, horizon_frame, read_panel
from modelmill.forecasting.registered import FORECASTERS

__all__ = ["ForecastPredictor", "history_state", "panel_from_state", "WEIGHTS_FILE"]

WEIGHTS_FILE = "weights.safetensors"
_SHOWN = 5


@dataclass
class ForecastPredictor:
    """The fitted forecaster with the kept history of its series."""

    config: ForecastConfig
    forecaster: Forecaster
    history: Panel

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ForecastPredictor:
        config = bundle.task_config()
        if not isinstance(config, ForecastConfig):
            raise BundleError(f"{bundle.path} is a `task: {config.task}` bundle, not a forecast")
        state = bundle.features_state()
        artifacts = bundle.model_artifacts(MAIN_MODEL)
        tensors = parse_weights(artifacts.pop(WEIGHTS_FILE), where=bundle.path / WEIGHTS_FILE) \
            if WEIGHTS_FILE in artifacts else {}
        forecaster_class = FORECASTERS.get(config.model.type, path="model.type")
        forecaster = forecaster_class.from_state(config, ForecasterState(state["forecaster"], tensors, artifacts))
        return cls(config, forecaster, panel_from_state(state["history"], config))

    @property
    def frequency(self) -> str:
        return self.history.frequency

    @property
    def series_ids(self) -> list[str]:
        return self.history.ids

    def forecast(self, frame: pd.DataFrame | None = None, *, series: Sequence[str] | None = None,
                 source: str = "the request") -> pd.DataFrame:
        """The horizon after the last step of every series of ``frame`` (its rows with a target
        value are the history; rows after a series' last known value carry the future
        covariates), and of every series named in ``series`` (from the kept history; a series
        that ``frame`` holds future rows of but no history is forecast from the kept history too).

        Returns:
            The id column (when the config has one), the time column, ``forecast``, ``lower`` and
            ``upper``, in the user's names, one row per series and forecast step.

        Raises:
            DataError: bad history (duplicates, irregular steps, too short), an unknown series,
                missing future covariates — naming the column, series and steps.
        """
        config = self.config
        given, future_rows = self._read(frame, source)
        sent = set(given.ids)
        wanted = list(dict.fromkeys(str(s) for s in series or []))
        both = [s for s in wanted if s in sent]
        if both:  # the sent steps and the kept ones would interleave: one source per series
            raise DataError(f"series {', '.join(repr(s) for s in both[:_SHOWN])} are both sent as history and "
                            "named in `series`. Fix: send the history, or name the series, not both", source=source)
        wanted += [s for s in pd.unique(future_rows[SERIES_ID]) if s not in sent | set(wanted)]
        if not wanted and not sent and not config.series.id:  # a table of one series: the one kept
            wanted = self.series_ids
        history = self._with_kept(given, wanted, source)
        if not len(history.frame):
            raise DataError("nothing to forecast: give the recent history of a series (rows with the target), or "
                            "name series whose history the model keeps", source=source)
        needed = self.forecaster.needed_history()
        short = history.lengths()[history.lengths() < needed]
        if len(short):
            raise DataError(f"{len(short)} series hold fewer steps than the model reads ({needed}): "
                            f"{', '.join(repr(s) for s in short.index[:_SHOWN])}. Fix: send at least {needed} "
                            "steps of history per series", source=source, column=config.series.time)
        future = horizon_frame(history, future_rows, config.series.horizon, source=source)
        try:
            forecasts = self.forecaster.forecast(history, future)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:  # a library refusing these values
            raise DataError(f"the model cannot forecast this history: {exc}. Fix: check the recent values (a "
                            "multiplicative ETS form needs positive ones)", source=source,
                            column=config.series.target) from None
        return self._user_frame(forecasts)

    def _read(self, frame: pd.DataFrame | None, source: str) -> tuple[Panel, pd.DataFrame]:
        empty = Panel(pd.DataFrame(columns=[SERIES_ID, TIME, VALUE]), self.frequency, self.history.season,
                      self.history.future, self.history.static)
        if frame is None or not len(frame):
            return empty, pd.DataFrame(columns=[SERIES_ID, TIME])
        series = self.config.series
        absent = [c for c in (series.target, *series.static) if c not in frame.columns]
        if absent:  # future rows only: the kept history (which holds the static covariates) forecasts
            frame = frame.assign(**{column: float("nan") for column in absent})
        panel, future_rows = read_panel(frame, self.config, source=source, frequency=self.frequency)
        return panel, future_rows

    def _with_kept(self, given: Panel, wanted: list[str], source: str) -> Panel:
        if not wanted:
            return given
        kept = set(self.history.ids)
        unknown = [s for s in wanted if s not in kept]
        if unknown:
            raise DataError(f"unknown series {', '.join(repr(s) for s in unknown[:_SHOWN])}; the model keeps the "
                            f"history of {len(kept)} series (e.g. {', '.join(repr(s) for s in sorted(kept)[:3])}). "
                            "Fix: send the series' history instead", source=source, column=self.config.series.id)
        rows = self.history.frame[self.history.frame[SERIES_ID].isin(wanted)]
        frame = pd.concat([given.frame, rows], ignore_index=True) if len(given.frame) else rows.reset_index(drop=True)
        return given.with_frame(frame)

    def _user_frame(self, forecasts: pd.DataFrame) -> pd.DataFrame:
        series = self.config.series
        names: dict[str, str] = {TIME: series.time}
        columns = [TIME, FORECAST, LOWER, UPPER]
        if series.id:
            names[SERIES_ID] = series.id
            columns.insert(0, SERIES_ID)
        return forecasts[columns].rename(columns=names).reset_index(drop=True)


def history_state(panel: Panel, keep: int) -> dict[str, Any]:
    """The latest ``keep`` steps of every series as plain data (a regular grid: the first
    step, then the values)."""
    kept = panel.tail(keep)
    columns = [VALUE, *panel.future, *panel.static]
    return {"frequency": panel.frequency, "season": panel.season, "future": list(panel.future),
            "static": list(panel.static),
            "series": {key: {"start": rows[TIME].iloc[0].isoformat(),
                             "values": {c: rows[c].astype(float).tolist() for c in columns}}
                       for key, rows in kept.series()}}


def panel_from_state(state: dict[str, Any], config: ForecastConfig) -> Panel:
    """The kept history back from :func:`history_state`'s output."""
    frames = []
    for key, series in state["series"].items():
        values = series["values"]
        steps = len(values[VALUE])
        frame = pd.DataFrame({SERIES_ID: key, TIME: pd.date_range(series["start"], periods=steps,
                                                                   freq=state["frequency"])})
        for column, numbers in values.items():
            frame[column] = pd.Series(numbers, dtype="float64")
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[SERIES_ID, TIME, VALUE])
    return Panel(frame, state["frequency"], int(state["season"]), tuple(state["future"]), tuple(state["static"]))
