"""``modelmill init --task forecast``: a commented ``task: forecast`` config inferred from the data.

What is read from the data: the time column (in any form :func:`~modelmill.data.times.parse_times`
reads), the series-id column (when the times repeat, the column within whose values each
time occurs once), the step between times, a horizon (one season for sub-daily, daily and
weekly steps, two for monthly and quarterly ones, capped by a quarter of the shortest
series), and the number columns that may be covariates, written commented out: whether a
column's values are known in advance is something only the user knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from modelmill.config.forecast import RESERVED, AutoForecastConfig, BacktestConfig
from modelmill.data.config_text import RENDER_HINT, commented, listing, missing_note, one_line, scalar
from modelmill.data.infer_config import InferResult, checked_name, default_name, target_position
from modelmill.data.schema import MAJORITY, ColumnInfo, infer_schema
from modelmill.data.time_layout import describe_step, infer_step, series_columns, time_columns
from modelmill.data.times import ParsedTimes, season_for
from modelmill.errors import DataError

__all__ = ["infer_forecast_config"]

YEARLY_HORIZON = 6  # steps ahead for series without a season (years): the M4 competition's yearly horizon
_TWO_SEASONS = frozenset({"MS", "ME", "M", "QS", "QE", "Q"})  # monthly and quarterly steps
_SEASON_WORDS = {"D": "a week of days", "B": "a week of business days", "W": "a year of weeks"}
_MAX_PARTS = 30  # number columns searched for pairs that sum to the target (435 pairs)


@dataclass(frozen=True)
class _Series:
    """Where the series are: the time column, the id column (None: one series), the step."""

    time: str
    times: ParsedTimes
    id: str | None
    frequency: str | None
    lengths: pd.Series  # steps per series
    first: str  # the earliest and the latest time, as the column writes them
    last: str


def infer_forecast_config(frame: pd.DataFrame, *, source: str, target: str, horizon: int | None = None,
                          name: str | None = None) -> InferResult:
    """A commented ``task: forecast`` config for forecasting ``target`` in ``frame``.

    Args:
        frame: The data, as read from ``source``: one row per series and time step.
        source: The data source as the config should name it.
        target: The column to forecast (numbers).
        horizon: Steps to forecast; by default inferred from the step between times.
        name: The pipeline's name; by default the source file's stem.

    Returns:
        The config text (which :func:`modelmill.config.load_task_config` accepts), the
        warnings and the inferred schema.

    Raises:
        DataError: No rows, the target missing or not numbers, no time column, or times that
            repeat with no column telling the series apart.
        ConfigError: ``name`` does not fit the name pattern.
    """
    run_name = checked_name(name) if name is not None else default_name(source)
    position = target_position(frame, target, source)
    frame = frame.reset_index(drop=True)  # rows by position: a concatenated frame repeats its index
    columns = infer_schema(frame)
    goal = columns[position]
    warnings = _check_target(frame.iloc[:, position], goal, source)
    found = _find_series(frame, columns, goal.name, source)
    warnings += _time_warnings(found)
    steps, why = _horizon(found, horizon)
    if horizon is not None and horizon > _cap(found):
        warnings.append(f"horizon {horizon} is more than a quarter of the shortest series ({found.lengths.min()} "
                        f"steps): the backtest's earliest cut-off leaves little history to fit on")
    roles = {goal.name, found.time} | ({found.id} if found.id else set())
    future, static, unused = _covariates(frame, columns, roles, found, goal.name)
    lines = _header(source, frame, found) + [
        "task: forecast", f"name: {scalar(run_name)}", "", "data:", f"  source: {scalar(source)}", "",
        *_series_lines(found, goal, steps, why, len(frame)), *_covariate_lines(future, static, unused),
        *_model_lines()]
    return InferResult(text="\n".join(lines) + "\n", warnings=tuple(warnings), columns=tuple(columns))


# ------------------------------------------------------------------------- reading


def _check_target(series: pd.Series, goal: ColumnInfo, source: str) -> list[str]:
    """Warnings about the target; DataError when it holds no numbers to forecast."""
    present = len(series) - goal.n_missing
    numbers = int(pd.to_numeric(series, errors="coerce").notna().sum())
    if goal.kind in ("empty", "constant") or numbers < MAJORITY * max(present, 1):
        raise DataError(f"cannot be forecast: {goal.kind}, {goal.reason}; a forecast target holds numbers. "
                        "Fix: choose a column of numbers (sales, demand, a count)", source=source, column=goal.name)
    if goal.n_missing:
        return [f"target {goal.name!r} is missing in {goal.n_missing:,} rows: only rows after a series' last "
                "known value may leave it empty (they carry future covariates); fill the others"]
    return []


def _find_series(frame: pd.DataFrame, columns: list[ColumnInfo], target: str, source: str) -> _Series:
    """The first time column whose times are unique, or unique within a series-id column."""
    times = time_columns(frame, columns, skip=target)
    if not times:
        kinds = [f"{c.name} ({c.kind})" for c in columns if c.name != target]
        raise DataError(
            f"no time column: none of {listing(kinds)} reads as timestamps, dates, months (2019 Jan), quarters "
            "(2019 Q3) or ISO weeks (2019 W07). Fix: add a column with the time of each row, or use --task predict",
            source=source)
    for name, parsed in times:
        present = parsed.values.dropna()
        ids = [] if present.is_unique else series_columns(frame, columns, parsed.values, skip=(target, name))
        if present.is_unique or ids:
            id_column = ids[0] if ids else None
            keys = frame[id_column].astype("string") if id_column else None
            frequency = parsed.frequency_hint or infer_step(parsed.values, keys)
            lengths = (present.groupby(keys[present.index]).size() if keys is not None
                       else pd.Series([len(present)]))
            column = frame[name]
            first, last = (str(column.loc[present.idxmin()]), str(column.loc[present.idxmax()]))
            return _Series(name, parsed, id_column, frequency, lengths, first, last)
    named = ", ".join(name for name, _ in times)
    raise DataError(
        f"the times of {named} repeat, and no column holds series within which each time occurs once. Fix: add "
        "one series-id column (join the columns that name a series, such as store and item, into one), or sum "
        "the rows of each time into one", source=source, column=times[0][0])


def _time_warnings(found: _Series) -> list[str]:
    warnings = []
    missing = int(found.times.values.isna().sum())
    if missing:
        warnings.append(f"time column {found.time!r}: {missing:,} values are missing or not times; the forecast "
                        "stops on them. Fix: correct or drop those rows")
    if found.frequency is None:
        warnings.append(f"time column {found.time!r}: no regular step between times was found (gaps, or an "
                        "irregular clock). Fix: fill the missing steps, or set series.frequency (30min, h, D, "
                        "W-MON, MS, QS)")
    return warnings


def _cap(found: _Series) -> int:
    return max(1, int(found.lengths.min()) // 4)


def _horizon(found: _Series, given: int | None) -> tuple[int, str]:
    """The horizon and why: one season for sub-daily, daily and weekly steps, two for monthly and
    quarterly ones (plans look a year or two ahead), at most a quarter of the shortest series,
    so that the backtest's cut-offs, a horizon apart, leave three quarters of it to fit on."""
    if given is not None:
        return given, "steps forecast ahead (as given)"
    if found.frequency is None:
        steps, why = YEARLY_HORIZON, f"{YEARLY_HORIZON} steps (no step between times was found)"
    else:
        season, step = season_for(found.frequency), describe_step(found.frequency)
        name = to_offset(found.frequency).rule_code.split("-")[0]
        if name in _TWO_SEASONS:
            steps, why = 2 * season, f"two seasons of {step} steps (2 × {season}): plans look a year or two ahead"
        elif season > 1:
            what = _SEASON_WORDS.get(name, "a day")
            steps, why = season, f"one season: {what} ({season} {step} steps)"
        else:
            steps, why = YEARLY_HORIZON, f"{YEARLY_HORIZON} {step} steps (the M4 competition's yearly horizon)"
    cap = _cap(found)
    if steps > cap:
        cutoffs = BacktestConfig.model_fields["cutoffs"].default
        steps, why = cap, (f"{why}, capped at a quarter of the shortest series ({found.lengths.min()} steps), so "
                           f"that the backtest's {cutoffs} cut-offs, a horizon apart, leave history to fit on")
    return steps, why


@dataclass(frozen=True)
class _Column:
    name: str
    comment: str


def _covariates(frame: pd.DataFrame, columns: list[ColumnInfo], roles: set[str], found: _Series,
                target: str) -> tuple[list[_Column], list[_Column], list[_Column]]:
    """(future candidates, static candidates, columns not used), each with why."""
    numbers = {info.name: _numbers(frame[info.name]) for info in columns
               if info.name not in roles and info.kind in ("number", "binary") and info.name not in RESERVED}
    numbers = {name: values for name, values in numbers.items() if values is not None}
    leaks = _parts_of_target(numbers, _numbers(frame[target]), target)
    future: list[_Column] = []
    static: list[_Column] = []
    unused: list[_Column] = []
    for info in columns:
        if info.name in roles:
            continue
        values = numbers.get(info.name)
        if info.name in leaks:
            unused.append(_Column(info.name, f"computed from the target ({leaks[info.name]}): it would leak"))
        elif values is None:
            why = ("a reserved name: rename it to use it" if info.name in RESERVED else
                   f"{info.kind}: {info.reason}; not a covariate (those are numbers)")
            unused.append(_Column(info.name, why))
        elif found.id and _constant_within(values, frame[found.id]):
            static.append(_Column(info.name, f"constant within each {found.id}: {info.reason}"))
        else:
            future.append(_Column(info.name, f"{info.reason}; {missing_note(info, len(frame))}"))
    return future, static, unused


def _numbers(column: pd.Series) -> pd.Series | None:
    values = pd.to_numeric(column, errors="coerce")
    return values.astype("float64") if values.notna().sum() == column.notna().sum() else None


def _parts_of_target(numbers: dict[str, pd.Series], target: pd.Series | None, name: str) -> dict[str, str]:
    """Columns that are the target, or add up to it with one other column (casual + registered
    = all riders): a forecast would read the answer from them."""
    if target is None:
        return {}
    found: dict[str, str] = {}
    t = target.to_numpy(dtype="float64")
    for column, values in numbers.items():
        if np.allclose(values.to_numpy(), t, equal_nan=True):
            found[column] = f"equal to {name}"
    names = [n for n in numbers if n not in found][:_MAX_PARTS]
    for left, right in combinations(names, 2):
        if np.allclose(numbers[left].to_numpy() + numbers[right].to_numpy(), t, equal_nan=True):
            found[left] = found[right] = f"{left} + {right} = {name}"
    return found


def _constant_within(values: pd.Series, ids: pd.Series) -> bool:
    per_series = values.groupby(ids.astype("string").to_numpy()).nunique(dropna=False)
    return bool((per_series <= 1).all()) and values.nunique() > 1


# ------------------------------------------------------------------------- writing


def _header(source: str, frame: pd.DataFrame, found: _Series) -> list[str]:
    return [
        f"# modelmill forecast config inferred from {one_line(source)} ({len(frame):,} rows, "
        f"{len(frame.columns):,} columns, {len(found.lengths):,} series).",
        *RENDER_HINT,
        "# A forecast is judged by rolling-origin backtesting (backtest: cutoffs, step), never by a",
        "# random split of rows: at each cut-off the model fits on the past alone and forecasts the",
        "# horizon after it.",
        "",
    ]


def _series_lines(found: _Series, goal: ColumnInfo, steps: int, why: str, rows: int) -> list[str]:
    info = found.times
    time_why = f"{info.values.nunique():,} distinct times from {found.first} to {found.last}"
    if found.id:
        low, high = int(found.lengths.min()), int(found.lengths.max())
        size = f"{low:,} steps each" if low == high else f"{low:,} to {high:,} steps"
        id_why = f"the times repeat: {len(found.lengths):,} series, each {found.time} once per {found.id} ({size})"
        id_line = commented(f"  id: {scalar(found.id)}", id_why)
    else:
        id_line = commented("  # id:", f"none: each {found.time} occurs once, so the table is one series")
    if found.frequency is None:
        freq_why = "no regular step was found: set one (30min, h, D, W-MON, MS, QS)"
    else:
        freq_why = (f"inferred: {describe_step(found.frequency)} ({found.frequency}), "
                    f"{season_for(found.frequency)} steps a season")
    return [
        "series:",
        commented(f"  time: {scalar(found.time)}", f"{info.form}s: {time_why}"),
        id_line,
        commented(f"  target: {scalar(goal.name)}", f"{goal.reason}; {missing_note(goal, rows)}"),
        commented("  frequency: auto", freq_why),
        commented(f"  horizon: {steps}", why),
    ]


def _covariate_lines(future: list[_Column], static: list[_Column], unused: list[_Column]) -> list[str]:
    lines: list[str] = []
    if future:
        lines += [
            "  # Known-future covariates: a column belongs here only if its values are known in advance for",
            "  # every forecast step (prices set ahead, holidays, weather forecasts), since a forecast needs",
            "  # them for the steps it forecasts; one measured with the target, or computed from it (a part",
            "  # of a sum), would leak the answer. Uncomment those that qualify:",
            "  # future:",
            *[commented(f"  #   - {scalar(c.name)}", c.comment) for c in future],
        ]
    if static:
        lines += ["  # Static covariates: numbers constant within each series (store size, a region code):",
                  "  # static:", *[commented(f"  #   - {scalar(c.name)}", c.comment) for c in static]]
    if unused:
        lines += ["  # Not used:", *[commented(f"  #   {scalar(c.name)}", c.comment) for c in unused]]
    return lines


def _model_lines() -> list[str]:
    candidates = ", ".join(AutoForecastConfig.model_fields["candidates"].default_factory())  # type: ignore[call-arg, misc]
    return ["", "model:", commented("  type: auto", f"tries {candidates} on the latest horizon before the "
                                    "forecast origin and keeps the best by MASE")]
