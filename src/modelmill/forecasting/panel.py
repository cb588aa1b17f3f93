"""Series read from a table into one checked long frame: a regular time grid per series, no
duplicate steps, numbers only, at least a horizon of history each.

Every forecasting stage works on a :class:`Panel`; the user's column names are mapped onto
``unique_id`` / ``ds`` / ``y`` here and back on every output. Rows in messages are numbered
from 1, the first data row of the table.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from modelmill.config.forecast import SERIES_ID, TIME, VALUE, ForecastConfig
from modelmill.data.times import parse_times, season_for
from modelmill.errors import ConfigError, DataError

__all__ = ["Panel", "check_history", "future_steps", "horizon_frame", "read_panel", "season_for", "ONE_SERIES"]

ONE_SERIES = "series"  # the id of the one series of a table without an id column
_SHOWN = 5  # rows named in an error message, at most


@dataclass(frozen=True)
class Panel:
    """Regular series, one row per series and step.

    Attributes:
        frame: ``unique_id`` (str), ``ds`` (datetime64), ``y`` (float; NaN on the future rows of
            :func:`read_panel`'s second result only), then the future and static covariates
            (float), sorted by series and time.
        frequency: The step, as a pandas offset alias (``30min``, ``h``, ``D``, ``MS``, ``QS-JAN`` …).
        season: Steps per season (MASE's scale, seasonal models).
        future: Known-future covariate columns.
        static: Static covariate columns.
    """

    frame: pd.DataFrame
    frequency: str
    season: int
    future: tuple[str, ...] = ()
    static: tuple[str, ...] = ()

    @property
    def ids(self) -> list[str]:
        return list(pd.unique(self.frame[SERIES_ID]))

    @property
    def offset(self) -> pd.DateOffset:
        return to_offset(self.frequency)

    def series(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """Each series' rows, in order."""
        for key, rows in self.frame.groupby(SERIES_ID, sort=False):
            yield str(key), rows

    def lengths(self) -> pd.Series:
        return self.frame.groupby(SERIES_ID, sort=False).size()

    def last_times(self) -> pd.Series:
        """Each series' last step."""
        return self.frame.groupby(SERIES_ID, sort=False)[TIME].max()

    def up_to(self, cutoff: pd.Timestamp) -> Panel:
        """The steps at or before ``cutoff`` (a backtest's training data)."""
        return replace(self, frame=self.frame[self.frame[TIME] <= cutoff].reset_index(drop=True))

    def tail(self, steps: int) -> Panel:
        """The latest ``steps`` of every series."""
        return replace(self, frame=self.frame.groupby(SERIES_ID, sort=False).tail(steps).reset_index(drop=True))

    def with_frame(self, frame: pd.DataFrame) -> Panel:
        return replace(self, frame=frame)


def future_steps(last: pd.Timestamp, frequency: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` steps after ``last``."""
    return pd.date_range(last, periods=horizon + 1, freq=frequency)[1:]


def horizon_frame(history: Panel, known: pd.DataFrame, horizon: int, *, source: str) -> pd.DataFrame:
    """The ``future`` argument of a forecast: each series' next ``horizon`` steps with the value
    of every future covariate, taken from ``known`` (rows with ``unique_id``, ``ds`` and the
    covariates: a request's future rows, or in a backtest the whole panel).

    Raises:
        DataError: a covariate value is missing for a step, naming the column, series and step.
    """
    parts = [pd.DataFrame({SERIES_ID: key, TIME: future_steps(last, history.frequency, horizon)})
             for key, last in history.last_times().items()]
    future = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[SERIES_ID, TIME])
    if not history.future:
        return future
    columns = [SERIES_ID, TIME, *history.future]
    given = known[columns] if len(known) else pd.DataFrame(columns=columns)
    future = future.merge(given, on=[SERIES_ID, TIME], how="left")
    for column in history.future:
        absent = future[future[column].isna()]
        if len(absent):
            first = absent.iloc[0]
            raise DataError(f"future covariate values are missing for {len(absent)} forecast step(s) (series "
                            f"{first[SERIES_ID]!r} at {first[TIME]}, …): a forecast needs the value of every "
                            f"future covariate ({', '.join(history.future)}) at each of the {horizon} steps after "
                            "the series' last known target. Fix: add rows for those steps with the covariates "
                            "filled and the target left empty", source=source, column=column)
    return future


def read_panel(frame: pd.DataFrame, config: ForecastConfig, *, source: str,
               frequency: str | None = None) -> tuple[Panel, pd.DataFrame]:
    """The series of ``frame`` and its future rows (steps after a series' last known target
    value, holding the future covariates of a forecast: empty when none are given).

    ``frequency``: the fitted one (a bundle's), which the data must follow; by default the
    config's, or inferred.

    Raises:
        DataError: a column missing, a time that does not parse, a target that is no number,
            duplicate or irregular steps within a series, a series no longer than the horizon,
            a missing covariate value — naming the column and the rows.
    """
    series = config.series
    needed = [series.time, series.target] + ([series.id] if series.id else []) + series.future + series.static
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"column(s) {', '.join(map(repr, missing))} not found; the table has: "
                        f"{', '.join(map(str, frame.columns[:20]))}", source=source, column=missing[0])
    frame = frame.reset_index(drop=True)  # row numbers in messages are positions in the table
    times, hint = _times(frame[series.time], series.time, series.time_format, source)
    long = pd.DataFrame({
        SERIES_ID: frame[series.id].astype("string").fillna("") if series.id else ONE_SERIES,
        TIME: times,
        VALUE: _numbers(frame[series.target], series.target, source, allow_missing=True),
    })
    for column in series.future + series.static:
        long[column] = _numbers(frame[column], column, source, allow_missing=True)
    long = long.sort_values([SERIES_ID, TIME], kind="stable")
    _no_duplicates(long, source, series.time)
    step = frequency or (series.frequency if series.frequency != "auto" else
                         hint or _infer_frequency(long, source, series.time))
    _regular(long, step, source, series.time)
    history, future = _split_future(long, source, series.target)
    _no_gaps_in(history, [VALUE] + series.future + series.static, source)
    _static_constant(history, series.static, source)
    season = series.season_length if series.season_length != "auto" else season_for(step)
    panel = Panel(history.reset_index(drop=True), step, season, tuple(series.future), tuple(series.static))
    return panel, future.reset_index(drop=True)


def check_history(panel: Panel, horizon: int, *, source: str, what: str = "the horizon") -> None:
    """Every series holds more steps than ``horizon`` (there is something to learn from)."""
    lengths = panel.lengths()
    short = lengths[lengths <= horizon]
    if len(short):
        named = ", ".join(f"{k!r} ({v} steps)" for k, v in short.head(_SHOWN).items())
        raise DataError(f"{len(short)} series hold no more steps than {what} ({horizon}): {named}. Fix: a "
                        "shorter series.horizon, or more history", source=source)


# ------------------------------------------------------------------------- steps


def _times(column: pd.Series, name: str, time_format: str | None, source: str) -> tuple[pd.Series, str | None]:
    """The times, and the frequency their form implies (months, quarters, weeks)."""
    parsed = parse_times(column, time_format=time_format, share=0.0, years=True)  # named the time column: 1998 is a year
    if parsed is None:
        raise DataError("the time column holds no times (timestamps, dates, 2019 Jan, 2019 Q3, 2019 W07)",
                        source=source, column=name)
    bad = [p for p in parsed.unparsed] + [int(p) for p in np.flatnonzero(column.isna().to_numpy())]
    if bad:
        shown = ", ".join(repr(column.iloc[p]) for p in sorted(bad)[:_SHOWN])
        raise DataError(f"{len(bad)} value(s) of the time column are missing or not times ({shown}). Fix: correct "
                        "them, or set series.time_format", source=source, column=name,
                        rows=[p + 1 for p in sorted(bad)[:_SHOWN]])
    return parsed.values, parsed.frequency_hint


def _numbers(column: pd.Series, name: str, source: str, *, allow_missing: bool) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    bad = np.flatnonzero((values.isna() & column.notna()).to_numpy() | np.isinf(values.to_numpy()))
    if len(bad):
        shown = ", ".join(repr(column.iloc[p]) for p in bad[:_SHOWN])
        raise DataError(f"{len(bad)} value(s) are not finite numbers ({shown})", source=source, column=name,
                        rows=[int(p) + 1 for p in bad[:_SHOWN]])
    return values


def _no_duplicates(long: pd.DataFrame, source: str, time_name: str) -> None:
    twice = long.duplicated([SERIES_ID, TIME], keep=False)
    if twice.any():
        rows = sorted(int(i) + 1 for i in long.index[twice])[:_SHOWN]
        first = long.loc[twice].iloc[0]
        raise DataError(f"{int(twice.sum())} rows share a time step with another row of their series (series "
                        f"{first[SERIES_ID]!r} at {first[TIME]}). Fix: one row per series and step (sum or average "
                        "the duplicates first)", source=source, column=time_name, rows=rows)


def _infer_frequency(long: pd.DataFrame, source: str, time_name: str) -> str:
    found: dict[str, str] = {}
    steps: list[pd.Timedelta] = []
    for key, rows in long.groupby(SERIES_ID, sort=False):
        times = pd.DatetimeIndex(rows[TIME])
        if len(times) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas 3 announces an offset instead of a string: freqstr below
            inferred = pd.infer_freq(times)
        freq = getattr(inferred, "freqstr", inferred)
        if freq is not None:
            found.setdefault(freq, str(key))
        else:  # gaps or an irregular step: the regularity check names the rows
            steps += list(times.to_series().diff().dropna())
    if not found and steps:  # no series regular: the most common step, so the check names where it breaks
        found[to_offset(pd.Series(steps).mode().iloc[0]).freqstr] = ""
    if not found:
        raise DataError("the step between times could not be inferred (each series needs 3 or more steps). "
                        "Fix: set series.frequency (30min, h, D, W-MON, MS, QS …)", source=source, column=time_name)
    if len(found) > 1:
        shown = "; ".join(f"{f} (series {k!r})" for f, k in list(found.items())[:_SHOWN])
        raise DataError(f"the series step at different frequencies: {shown}. Fix: set series.frequency, and "
                        "resample the series that differ", source=source, column=time_name)
    return next(iter(found))


def _regular(long: pd.DataFrame, frequency: str, source: str, time_name: str) -> None:
    try:
        offset = to_offset(frequency)
    except ValueError:
        raise ConfigError(f"{frequency!r} is no pandas frequency (30min, h, D, W-MON, MS, QS …)",
                          path="series.frequency") from None
    for key, rows in long.groupby(SERIES_ID, sort=False):
        times = pd.DatetimeIndex(rows[TIME])
        expected = pd.date_range(times[0], periods=len(times), freq=offset)
        if len(times) and not times.equals(expected):
            at = int(np.flatnonzero(times != expected)[0])
            row = int(rows.index[at])
            raise DataError(f"series {key!r} is not regular at step {frequency}: after {times[at - 1] if at else '?'} "
                            f"comes {times[at]}, expected {expected[at]}. Fix: fill the missing "
                            "steps (with the target left empty only after the last known value), or set "
                            "series.frequency", source=source, column=time_name, rows=[row + 1])


def _split_future(long: pd.DataFrame, source: str, target: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History (up to each series' last known target) and future rows (after it)."""
    known = long[VALUE].notna()
    last_known = known[::-1].groupby(long[SERIES_ID][::-1], sort=False).cummax()[::-1]
    history, future = long[last_known], long[~last_known]
    empty = history[history[VALUE].isna()]
    if len(empty):
        rows = sorted(int(i) + 1 for i in empty.index)[:_SHOWN]
        raise DataError(f"{len(empty)} target value(s) are missing inside the history. Fix: fill or interpolate them; an empty target is "
                        "only allowed after a series' last known value (rows that carry future covariates)",
                        source=source, column=target, rows=rows)
    return history, future


def _no_gaps_in(history: pd.DataFrame, columns: list[str], source: str) -> None:
    for column in columns:
        empty = history[column].isna()
        if empty.any():
            rows = sorted(int(i) + 1 for i in history.index[empty])[:_SHOWN]
            raise DataError(f"{int(empty.sum())} value(s) are missing. Fix: fill them", source=source, column=column, rows=rows)


def _static_constant(history: pd.DataFrame, static: list[str], source: str) -> None:
    for column in static:
        varies = history.groupby(SERIES_ID, sort=False)[column].nunique() > 1
        if varies.any():
            raise DataError(f"a static covariate changes within series {varies[varies].index[0]!r}. Fix: list it "
                            "under series.future, or make it constant per series", source=source, column=column)
