"""Window features of forecast origins: what the learned models (``gbdt``, ``deep``) see.

For a series and an origin ``t`` (its last known step) a window holds the values at or before
``t`` only — lags counted back from ``t``, rolling means and standard deviations over windows
ending at ``t`` — and, for each forecast step ``h = 1..H``: ``h`` itself, the values at the
same position of the season one and two seasons before ``t + h`` (the latest such steps at or
before ``t``), the calendar of ``t + h`` (sine and cosine of the parts that vary at the
frequency), the known-future covariates at ``t + h`` and the static covariates.

Every value of a window, and its target, is divided by one number of the window's past: the
mean absolute value of its latest ``max(season, horizon)`` steps. One model so learns from
series of any level (the global models of Salinas et al., 2020 and Oreshkin et al., 2020 scale
the same way); its predictions are multiplied back by the same number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from modelmill.config.forecast import SERIES_ID, TIME, VALUE, ForecastConfig
from modelmill.errors import DataError
from modelmill.forecasting.base import FORECAST, LOWER, UPPER
from modelmill.forecasting.panel import Panel, future_steps

__all__ = ["Origins", "WindowSpec", "Windows", "build_windows", "forecast_frame", "forecast_steps", "resolve_spec",
           "training_origins"]

MAX_LAG = 1000  # the config's cap on auto lags
SCALE_FLOOR = 1e-8  # a window whose past is all zeros is not divided by zero
FUTURE_SOURCE = "the future rows"  # where a forecast's known-future covariates come from, in messages
_SHOWN = 5
# Calendar parts by their period in days; a part is used where the step is shorter than its period.
_PERIODS = {"day": 1.0, "week": 7.0, "year": 365.25}


@dataclass(frozen=True)
class WindowSpec:
    """The window features of one fitted model, resolved from the config and the data.

    Attributes:
        horizon: Forecast steps after each origin.
        season: Steps per season.
        frequency: The step, as a pandas offset alias.
        lags: Steps back from the origin (1: the origin's own value).
        windows: Lengths of the rolling windows ending at the origin.
        calendar: Calendar parts of each forecast step (``day``, ``week``, ``year``).
        future: Known-future covariate columns.
        static: Static covariate columns.
    """

    horizon: int
    season: int
    frequency: str
    lags: tuple[int, ...]
    windows: tuple[int, ...]
    calendar: tuple[str, ...]
    future: tuple[str, ...] = ()
    static: tuple[str, ...] = ()
    reach: int = 0  # a model that reads a longer past than the features (deep's context)

    @property
    def scale_steps(self) -> int:
        """Latest steps whose mean absolute value scales a window."""
        return max(self.season, self.horizon)

    @property
    def context(self) -> int:
        """Steps of the past a window reads (the seasonal lags reach two seasons back)."""
        return max(max(self.lags), max(self.windows), 2 * self.season, self.scale_steps, self.reach)

    @property
    def min_past(self) -> int:
        """Fewest known steps before a training origin (older values of a shorter past are missing)."""
        return min(self.context, max(2, self.season, self.horizon))

    def origin_names(self) -> list[str]:
        """Columns of :attr:`Windows.origin`."""
        names = [f"lag_{lag}" for lag in self.lags]
        names += [f"{stat}_{w}" for w in self.windows for stat in ("mean", "std")]
        return names + ["log_scale"] + list(self.static)

    def step_names(self) -> list[str]:
        """Columns of :attr:`Windows.steps`."""
        names = ["step", "season_lag_1", "season_lag_2"]
        names += [f"{part}_{trig}" for part in self.calendar for trig in ("sin", "cos")]
        return names + list(self.future)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WindowSpec:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


def resolve_spec(config: ForecastConfig, panel: Panel) -> WindowSpec:
    """The window features of ``config.features``, ``auto`` filled in from the panel's season.

    ``lags: auto``: the last season and a half (the same steps one and two seasons back from
    each forecast step are always there, as ``season_lag_1/2``); ``windows: auto``: one and four
    seasons, at least the horizon each.
    """
    features, season, horizon = config.features, max(1, panel.season), config.series.horizon
    lags = features.lags if features.lags != "auto" else \
        list(range(1, min(MAX_LAG, max(2, math.ceil(1.5 * season))) + 1))
    windows = features.windows if features.windows != "auto" else [max(season, horizon), max(4 * season, horizon)]
    calendar = calendar_parts(panel.frequency) if features.calendar else ()
    return WindowSpec(horizon, season, panel.frequency, tuple(sorted(set(lags))), tuple(sorted(set(windows))),
                      calendar, panel.future, panel.static)


def calendar_parts(frequency: str) -> tuple[str, ...]:
    """The calendar parts that vary at ``frequency``: the time of day below a day's step, the day
    of the week below a week's, the time of year below a year's."""
    stamps = pd.date_range("2001-01-01", periods=2, freq=frequency)
    step_days = (stamps[1] - stamps[0]) / pd.Timedelta(days=1)
    return tuple(part for part, period in _PERIODS.items() if step_days < period * 0.99)


def calendar_values(times: pd.DatetimeIndex, parts: tuple[str, ...]) -> np.ndarray:
    """Sine and cosine of each part's phase: (len(times), 2 × parts)."""
    day = (times.hour * 3600 + times.minute * 60 + times.second).to_numpy(dtype="float64") / 86400
    phases = {"day": day, "week": (times.day_of_week.to_numpy() + day) / 7,
              "year": (times.day_of_year.to_numpy() - 1 + day) / np.where(times.is_leap_year, 366.0, 365.0)}
    columns = []
    for part in parts:
        angle = 2 * np.pi * phases[part]
        columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=1) if columns else np.zeros((len(times), 0))


# ------------------------------------------------------------------------- windows


@dataclass
class Windows:
    """The windows of some forecast origins (n of them), scaled.

    Attributes:
        ids: (n,) the series of each origin.
        positions: (n,) each origin's position in its series (0: its first step).
        times: (n,) each origin's time step.
        scale: (n,) the number each window's values and targets are divided by.
        past: (n, context) the past values, oldest first, the origin's last; NaN before the series starts.
        origin: (n, origin columns) lags, rolling statistics, log of the scale, static covariates.
        steps: (n, horizon, step columns) per forecast step: step, seasonal lags, calendar, future covariates.
        target: (n, horizon) the values at the forecast steps; NaN where unknown.
    """

    ids: np.ndarray
    positions: np.ndarray
    times: np.ndarray
    scale: np.ndarray
    past: np.ndarray
    origin: np.ndarray
    steps: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def matrix(self) -> np.ndarray:
        """One row per (origin, step), origin by origin, for a model of every step at once:
        (n × horizon, origin columns + step columns)."""
        n, horizon, _ = self.steps.shape
        features = np.concatenate([np.repeat(self.origin[:, None, :], horizon, axis=1), self.steps], axis=2)
        return features.reshape(n * horizon, -1)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows of :meth:`matrix` whose target is known, and their scaled targets (rows,)."""
        target = self.target.reshape(-1)
        known = ~np.isnan(target)
        return self.matrix()[known], target[known]

    def until(self, last: Mapping[str, int]) -> Windows:
        """These windows with the targets after position ``last[series]`` unknown (training rows
        whose targets would overlap the held-out ones)."""
        limit = np.array([last.get(str(i), np.iinfo(np.int64).max) for i in self.ids], dtype=np.int64)
        ahead = self.positions[:, None] + np.arange(1, self.target.shape[1] + 1)[None, :]
        target = np.where(ahead <= limit[:, None], self.target, np.nan)
        return Windows(self.ids, self.positions, self.times, self.scale, self.past, self.origin, self.steps, target)


@dataclass(frozen=True)
class Origins:
    """Training origins per series (positions), split in time: ``train`` (their targets end at or
    before the first held-out origin, ``train_until``), ``valid`` (the latest origins with a whole
    horizon after them) and ``refit`` (every origin, for the fit on all the steps)."""

    train: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    refit: dict[str, np.ndarray]
    train_until: dict[str, int]


def training_origins(panel: Panel, spec: WindowSpec, *, max_origins: int, seed: int) -> Origins:
    """The origins to learn from: every step with ``spec.min_past`` known steps and one after it;
    the latest of each series held out for early stopping (a tenth of the series, between one
    horizon and twenty horizons or seasons). Where there are more than ``max_origins``, a seeded
    draw of them, spread over the whole history, so a long series trains in bounded time."""
    train, valid, refit, until = {}, {}, {}, {}
    horizon = spec.horizon
    for key, length in panel.lengths().items():
        n = int(length)
        eligible = np.arange(min(spec.min_past, max(1, n - horizon)) - 1, n - 1)
        # a long stretch, so one odd week (a holiday) does not decide the rounds or the bounds alone
        held = min(max(horizon, n // 10), 20 * max(horizon, spec.season))
        first = max(int(eligible[0]) + 1, n - 1 - horizon - held + 1) if len(eligible) else n
        valid[str(key)] = eligible[(eligible >= first) & (eligible <= n - 1 - horizon)]
        train[str(key)] = eligible[eligible < first]
        refit[str(key)] = eligible
        until[str(key)] = first
    rng = np.random.default_rng(seed)
    return Origins(_capped(train, max_origins, rng), _capped(valid, max_origins // 2, rng),
                   _capped(refit, max_origins, rng), until)


def _capped(origins: dict[str, np.ndarray], most: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    total = sum(len(v) for v in origins.values())
    if total <= most:
        return origins
    keep = np.zeros(total, dtype=bool)
    keep[rng.choice(total, size=most, replace=False)] = True
    out, start = {}, 0
    for key, positions in origins.items():
        out[key] = positions[keep[start:start + len(positions)]]
        start += len(positions)
    return out


def build_windows(panel: Panel, spec: WindowSpec, origins: Mapping[str, np.ndarray] | None = None,
                  future: pd.DataFrame | None = None) -> Windows:
    """The windows of ``origins`` (positions per series; steps after a series' end get unknown
    targets and covariates), or, without them, of each series' last step: a forecast, whose
    known-future covariates come from ``future`` (see :func:`forecast_steps`)."""
    steps = {} if origins is not None else \
        {str(k): rows for k, rows in forecast_steps(panel, spec, future).groupby(SERIES_ID, sort=False)}
    parts = []
    for key, rows in panel.series():
        positions = np.array([len(rows) - 1]) if origins is None else np.asarray(origins.get(key, []), dtype=np.int64)
        if len(positions):
            parts.append(_series_windows(key, rows, positions, spec, steps.get(key)))
    if not parts:
        raise DataError("no forecast origin has enough history to learn from. Fix: more history, or a shorter "
                        "series.horizon")
    return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Windows.__dataclass_fields__))


def forecast_frame(windows: Windows, spec: WindowSpec, forecast: np.ndarray, lower: np.ndarray,
                   upper: np.ndarray) -> pd.DataFrame:
    """The forecast contract's frame from (origins, horizon) arrays in the data's units: one row
    per series and step, ``lower ≤ forecast ≤ upper``."""
    times = [future_steps(pd.Timestamp(t), spec.frequency, spec.horizon) for t in windows.times]
    return pd.DataFrame({
        SERIES_ID: np.repeat(windows.ids, spec.horizon).astype(str),
        TIME: pd.DatetimeIndex(np.concatenate([t.to_numpy() for t in times])),
        FORECAST: forecast.reshape(-1),
        LOWER: np.minimum(lower, forecast).reshape(-1),
        UPPER: np.maximum(upper, forecast).reshape(-1),
    })


def forecast_steps(history: Panel, spec: WindowSpec, future: pd.DataFrame | None) -> pd.DataFrame:
    """``unique_id``, ``ds`` and the known-future covariates of the horizon after each series'
    last step, the covariates taken from ``future``.

    Raises:
        DataError: a future covariate is missing at some step (naming the column, series and steps).
    """
    last = history.last_times()
    steps = pd.concat([pd.DataFrame({SERIES_ID: key, TIME: future_steps(t, spec.frequency, spec.horizon)})
                       for key, t in last.items()], ignore_index=True)
    if not spec.future:
        return steps
    given = future if future is not None else pd.DataFrame(columns=[SERIES_ID, TIME, *spec.future])
    absent = [c for c in spec.future if c not in given.columns]
    if absent:
        raise DataError(f"the known-future covariate(s) {', '.join(map(repr, absent))} are not given for the "
                        "forecast steps. Fix: send rows after each series' last value carrying them",
                        source=FUTURE_SOURCE, column=absent[0])
    given = given[[SERIES_ID, TIME, *spec.future]].drop_duplicates([SERIES_ID, TIME], keep="last")
    steps = steps.merge(given, on=[SERIES_ID, TIME], how="left")
    for column in spec.future:
        _all_present(steps, column)
    return steps


def _all_present(steps: pd.DataFrame, column: str) -> None:
    empty = steps[steps[column].isna()]
    if len(empty):
        key = empty[SERIES_ID].iloc[0]
        times = ", ".join(str(t) for t in empty.loc[empty[SERIES_ID] == key, TIME].head(_SHOWN))
        raise DataError(f"the known-future covariate has no value at {len(empty)} of the {len(steps)} forecast steps "
                        f"(series {key!r} at {times}{' …' if len(empty) > _SHOWN else ''}). Fix: give its value "
                        "for every step of the horizon after each series' last known target",
                        source=FUTURE_SOURCE, column=column)


def _series_windows(key: str, rows: pd.DataFrame, positions: np.ndarray, spec: WindowSpec,
                    ahead: pd.DataFrame | None) -> Windows:
    """The windows of one series at ``positions``; ``ahead``: its forecast steps (None: training)."""
    y = rows[VALUE].to_numpy(dtype="float64")
    horizon, context, n = spec.horizon, spec.context, len(y)
    past = sliding_window_view(np.concatenate([np.full(context, np.nan), y]), context)[positions + 1]
    scale = _scale(past[:, -spec.scale_steps:])  # (m,)
    origin = _origin_features(past, scale, spec, rows)
    # the steps after the series' end: generated times, unknown targets and covariates (training),
    # or the forecast's steps with the covariates given for them
    times = pd.DatetimeIndex(rows[TIME])
    extra_times = future_steps(times[-1], spec.frequency, horizon) if ahead is None else pd.DatetimeIndex(ahead[TIME])
    all_times = times.append(extra_times)
    covariates = rows[list(spec.future)].to_numpy(dtype="float64")
    extra = np.full((horizon, len(spec.future)), np.nan) if ahead is None else \
        ahead[list(spec.future)].to_numpy(dtype="float64")
    all_covariates = np.concatenate([covariates, extra])
    all_y = np.concatenate([y, np.full(horizon, np.nan)])
    h = np.arange(1, horizon + 1)
    at = positions[:, None] + h[None, :]  # (m, horizon) positions of the forecast steps
    steps = np.concatenate([
        np.broadcast_to(h[None, :, None], (*at.shape, 1)).astype("float64"),
        _seasonal_lags(y, positions, spec)[..., :] / scale[:, None, None],
        calendar_values(all_times, spec.calendar)[at],
        all_covariates[at],
    ], axis=2)
    target = all_y[np.minimum(at, n + horizon - 1)] / scale[:, None]
    return Windows(np.full(len(positions), key, dtype=object), positions,
                   times.to_numpy()[positions], scale, past / scale[:, None], origin, steps, target)


def _scale(recent: np.ndarray) -> np.ndarray:
    """Mean absolute value of each row's known values (m,), floored; 1 where none is known."""
    known = ~np.isnan(recent)
    count = known.sum(axis=1)
    total = np.where(known, np.abs(recent), 0.0).sum(axis=1)
    mean = np.divide(total, count, out=np.zeros(len(recent)), where=count > 0)
    return np.where(mean > SCALE_FLOOR, mean, 1.0)


def _origin_features(past: np.ndarray, scale: np.ndarray, spec: WindowSpec, rows: pd.DataFrame) -> np.ndarray:
    """Lags, rolling means and deviations (all scaled), the log of the scale, static covariates."""
    context = spec.context
    columns = [past[:, context - lag] / scale for lag in spec.lags]
    for width in spec.windows:
        recent = past[:, context - width:]
        known = ~np.isnan(recent)
        count = known.sum(axis=1)
        filled = np.where(known, recent, 0.0)
        mean = np.divide(filled.sum(axis=1), count, out=np.full(len(past), np.nan), where=count > 0)
        square = np.divide((filled ** 2).sum(axis=1), count, out=np.full(len(past), np.nan), where=count > 1)
        std = np.sqrt(np.maximum(square - mean ** 2, 0.0))
        columns += [mean / scale, std / scale]
    columns.append(np.log(scale))
    static = rows[list(spec.static)].to_numpy(dtype="float64")[:1]  # constant within a series (checked on read)
    columns += [np.full(len(past), value) for value in (static[0] if len(static) else [])]
    return np.stack(columns, axis=1)


def _seasonal_lags(y: np.ndarray, positions: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """(m, horizon, 2): the values at the same point of the season as each forecast step, from
    the latest season at or before the origin and the one before it (unscaled; NaN before the
    series starts)."""
    season = spec.season
    h = np.arange(1, spec.horizon + 1)
    back = np.ceil(h / season).astype(np.int64) * season  # steps back from t + h to the latest season ≤ t
    first = positions[:, None] + h[None, :] - back[None, :]
    where = np.stack([first, first - season], axis=2)
    return np.where(where >= 0, y[np.maximum(where, 0)], np.nan)
