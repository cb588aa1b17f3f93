"""How a table lays its rows out in time, for ``init``: which time column orders the rows (so
that no random split is proposed for them), which column tells its series apart, and the step
between the times of a series.

A table is time-ordered along a time column when its rows are sorted by it, when each time
occurs once and the times follow a regular step (one series, shuffled), or when the times
repeat but are unique within the values of another column (many series in one table, such as
a quarter per state).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from modelmill.data.schema import ColumnInfo
from modelmill.data.times import ParsedTimes, parse_times

__all__ = ["TimeLayout", "describe_step", "find_time_layout", "infer_step", "series_columns", "time_columns"]

MIN_TIMES = 3  # distinct times a column needs before its order says anything
REGULAR = 0.9  # share of steps equal to the most common one for unique times to be a series
_ID_KINDS = ("category", "binary", "identifier")  # kinds whose values can name series
_SAMPLE_SERIES = 50  # series whose step is inferred (the others must follow it; the panel checks)


@dataclass(frozen=True)
class TimeLayout:
    """A time column along which the rows are ordered.

    Attributes:
        time: The time column's name.
        times: The column read as times.
        series_id: The column within whose values each time occurs once (None: one series, or
            rows sorted by time).
        reason: Why the rows are ordered along ``time``, as a sentence fragment.
    """

    time: str
    times: ParsedTimes
    series_id: str | None
    reason: str


def time_columns(frame: pd.DataFrame, columns: list[ColumnInfo], *, skip: str) -> list[tuple[str, ParsedTimes]]:
    """The columns inferred as dates (other than ``skip``), read as times, in column order."""
    found: list[tuple[str, ParsedTimes]] = []
    for index, info in enumerate(columns):
        if info.kind != "date" or info.name == skip:
            continue
        parsed = parse_times(frame.iloc[:, index], share=0.0)
        if parsed is not None:
            found.append((info.name, parsed))
    return found


def find_time_layout(frame: pd.DataFrame, columns: list[ColumnInfo], *, skip: str) -> TimeLayout | None:
    """The first time column along which the rows of ``frame`` are ordered, or None.

    Args:
        frame: The data.
        columns: Its inferred schema.
        skip: A column that cannot be the time column (the target).
    """
    for name, parsed in time_columns(frame, columns, skip=skip):
        present = parsed.values.dropna()
        n_times = present.nunique()
        if n_times < MIN_TIMES:
            continue
        if present.is_monotonic_increasing or present.is_monotonic_decreasing:
            return TimeLayout(name, parsed, None, f"the rows are sorted by {name}")
        if n_times == len(present) and _regular(present):
            return TimeLayout(name, parsed, None, f"each {name} occurs once, at a regular step")
        ids = series_columns(frame, columns, parsed.values, skip=(skip, name))
        if ids and len(present) >= 2 * n_times:  # times shared by several series, not a coincidence
            return TimeLayout(name, parsed, ids[0], f"each {name} occurs once per {ids[0]}")
    return None


def series_columns(frame: pd.DataFrame, columns: list[ColumnInfo], times: pd.Series, *,
                   skip: tuple[str, ...]) -> list[str]:
    """Columns within whose values each time occurs once, and that hold several series of at
    least :data:`MIN_TIMES` rows each: columns of names first, then of whole numbers (a store
    number), each group by fewest distinct values (the coarsest split that works)."""
    rows = int(times.notna().sum())
    candidates: list[tuple[int, int, str]] = []
    for index, info in enumerate(columns):
        if info.name in skip or not 2 <= info.n_unique <= rows // MIN_TIMES:
            continue
        column = frame.iloc[:, index]
        numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
        rank = 0 if info.kind in _ID_KINDS and not numeric else 1 if numeric and _whole(column) else -1
        if rank < 0:
            continue
        keys = pd.DataFrame({"id": frame.iloc[:, index].astype("string").to_numpy(), "time": times.to_numpy()})
        keys = keys[keys["time"].notna()]
        if not keys.duplicated().any():
            candidates.append((rank, info.n_unique, info.name))
    return [name for _, _, name in sorted(candidates)]


def infer_step(times: pd.Series, series: pd.Series | None) -> str | None:
    """The step between consecutive times of a series, as a pandas offset alias (the most
    common one over up to 50 series), or None when no series shows a regular step."""
    frame = pd.DataFrame({"time": times.to_numpy(), "id": "" if series is None else series.astype("string")})
    frame = frame.dropna(subset=["time"])
    found: dict[str, int] = {}
    for _, rows in list(frame.groupby("id", sort=False))[:_SAMPLE_SERIES]:
        ordered = pd.DatetimeIndex(rows["time"].sort_values().unique())
        if len(ordered) < MIN_TIMES:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas 3 announces an offset in place of the alias
            freq = pd.infer_freq(ordered)
        if freq is not None:
            found[freq] = found.get(freq, 0) + 1
    return max(found, key=lambda f: found[f]) if found else None


def _regular(times: pd.Series) -> bool:
    steps = np.diff(np.sort(times.to_numpy(dtype="datetime64[ns]")).astype("int64"))
    if not len(steps):
        return False
    _, counts = np.unique(steps, return_counts=True)
    return bool(counts.max() >= REGULAR * len(steps))


def _whole(column: pd.Series) -> bool:
    values = pd.to_numeric(column, errors="coerce").dropna().to_numpy(dtype="float64")
    return bool(len(values)) and bool(np.all(np.mod(values, 1) == 0))


def describe_step(frequency: str) -> str:
    """A step in words: ``half-hourly``, ``hourly``, ``daily``, ``weekly``, ``monthly`` …"""
    offset = to_offset(frequency)
    name = offset.rule_code.split("-")[0]
    words = {"D": "daily", "B": "business-daily", "W": "weekly", "MS": "monthly", "ME": "monthly",
             "QS": "quarterly", "QE": "quarterly", "YS": "yearly", "YE": "yearly"}
    if name in words and offset.n == 1:
        return words[name]
    try:
        step = pd.Timedelta(offset)
    except ValueError:
        return f"every {frequency}"
    return {pd.Timedelta(minutes=30): "half-hourly", pd.Timedelta(hours=1): "hourly"}.get(step, f"every {frequency}")
