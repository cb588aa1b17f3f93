"""Time columns in the forms people write them: timestamps, dates, months (``2019 Jan``,
``Jan 2019``, ``2019-01``), quarters (``2019 Q3``, ``2019Q3``) and ISO weeks (``2019 W07``,
``2019-W07``), each read as the timestamp its period starts at.

Used by ``init`` (to recognise a time column), by the date feature (to read one, value by
value) and by forecasting (to read one, and its season).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from modelmill.data.values import SMALL_COLUMN, as_strings
from modelmill.errors import DataError

__all__ = ["ParsedTimes", "TimeForm", "parse_times", "read_dates", "season_for"]

TimeForm = Literal["timestamp", "date", "month", "quarter", "week", "year"]
PARSED_SHARE = 0.98  # a column is a time column when this share of its present values parse
FORM_SHARE = 0.5  # a form is tried only when at least this share of the values are written in it

_QUARTER = re.compile(r"^\s*(\d{4})\s*[-/ ]?\s*Q([1-4])\s*$|^\s*Q([1-4])\s*[-/ ]?\s*(\d{4})\s*$", re.IGNORECASE)
_WEEK = re.compile(r"^\s*(\d{4})\s*[-/ ]?\s*W(\d{1,2})\s*$", re.IGNORECASE)
_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
                "october", "november", "december")
_MONTH_NAME = re.compile(r"^\s*(\d{4})\s*[-/ ]?\s*([A-Za-z]{3,9})\.?\s*$|^\s*([A-Za-z]{3,9})\.?\s*[-/ ]?\s*(\d{4})\s*$")
_YEAR_MONTH = re.compile(r"^\s*(\d{4})\s*[-/.]\s*(\d{1,2})\s*$")

@dataclass(frozen=True)
class ParsedTimes:
    """A column read as times.

    Attributes:
        values: The start of each value's period (``datetime64[ns]``; NaT where a value is
            missing or did not parse), on the column's index.
        form: How the column writes its times.
        unparsed: Positions (0-based) of present values that did not parse.
    """

    values: pd.Series
    form: TimeForm
    unparsed: tuple[int, ...]

    @property
    def frequency_hint(self) -> str | None:
        """The frequency the form implies (None for timestamps and dates: the data says)."""
        return {"month": "MS", "quarter": "QS", "week": "W-MON", "year": "YS"}.get(self.form)


def parse_times(column: pd.Series, *, time_format: str | None = None,
                share: float = PARSED_SHARE, years: bool = False) -> ParsedTimes | None:
    """The column read as times, or None when fewer than ``share`` of its present values parse
    (or it holds numbers: a year or an epoch count is too easily a plain number).

    The whole column is read in one form (the first of quarters, weeks, months, then
    timestamps that parses at least ``share`` of it, and half at least), so that one form's
    frequency holds for every value; timestamps are read in one format where one fits them
    all, day-first where that is the one that does (``13/01/2020``).
    """
    if pd.api.types.is_datetime64_any_dtype(column):
        values = _naive(pd.Series(pd.to_datetime(column), index=column.index))
        return ParsedTimes(values, _timestamp_form(values), ())
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column) and years:
        return _years(column)
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return None
    text = column.astype("string")
    present = text.notna() & (text.str.strip() != "")
    if not present.any():
        return None
    sample = text[present]
    readers = _READERS if time_format is None else (("timestamp", _timestamps),)
    for form, reader in readers:
        parsed = reader(sample, time_format)
        ok = parsed.notna()
        if ok.mean() < max(share, FORM_SHARE if time_format is None else 0.0):
            continue
        values = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns]")
        values[present] = parsed.astype("datetime64[ns]").to_numpy()
        positions = np.flatnonzero(present.to_numpy())[~ok.to_numpy()]
        final_form = _timestamp_form(values) if form == "timestamp" else form
        return ParsedTimes(values, final_form, tuple(int(p) for p in positions))
    return None


def read_dates(column: pd.Series, fmt: str | None, *, feature: str) -> pd.Series:
    """Values as timezone-naive datetimes (NaT for missing), each value read on its own, so a
    record reads the same alone as in a table: a month, quarter or ISO week as its first day,
    any other value as a timestamp (``fmt``: its strftime format, else each value's own).

    Raises:
        DataError: Values that are not times, naming the column, the rows and examples.
    """
    if pd.api.types.is_datetime64_any_dtype(column):
        return _naive(column)
    text = as_strings(column)
    parsed = _timestamps_of(text, fmt)
    rest = parsed.isna() & text.notna()
    if fmt is None and rest.any():  # a parser of timestamps reads no month, quarter or week differently
        parsed = _in_nanoseconds(parsed)
        parsed[rest] = _read_periods(text[rest]).to_numpy()
        rest = parsed.isna() & text.notna()
    if rest.any():
        examples = ", ".join(repr(v) for v in text[rest].unique()[:3])
        raise DataError(
            f"is a date feature but holds {int(rest.sum())} values that are not dates (e.g. {examples}); dates, "
            "timestamps, months (2019 Jan, 2019-01), quarters (2019 Q3) and ISO weeks (2019 W07) are read. "
            "Fix: clean them, or set `format:` (strftime) on the feature",
            column=feature,
            rows=np.flatnonzero(rest.to_numpy()).tolist(),
        )
    return parsed


def _timestamps_of(text: pd.Series, fmt: str | None) -> pd.Series:
    """Each value as a timestamp on its own (``format="mixed"``), or in ``fmt``; a long column
    whose values repeat (months, quarters: each a slow failure of the parser) by distinct value."""
    if len(text) > SMALL_COLUMN and text.iloc[:1000].nunique() <= 500:  # the head repeats: worth hashing all
        codes, distinct = pd.factorize(text)
        if len(distinct) <= len(text) // 2:
            parsed = _timestamps_of(pd.Series(distinct, dtype="string"), fmt).to_numpy()
            values = np.where(codes >= 0, parsed[np.maximum(codes, 0)], np.datetime64("NaT"))
            return pd.Series(values, index=text.index)
    with warnings.catch_warnings():
        # pandas is dropping its reading of "2019Q3"; the quarter reader after this one reads it
        warnings.filterwarnings("ignore", message="Parsing .* as a quarterly string")
        try:
            parsed = pd.to_datetime(text, format=fmt or "mixed", errors="coerce")
        except ValueError:  # offsets that differ between rows: compare them all in UTC
            parsed = pd.to_datetime(text, format=fmt or "mixed", errors="coerce", utc=True)
    return _naive(parsed)


def season_for(frequency: str) -> int:
    """Steps per season at a frequency: a day for sub-daily steps (48 half-hours, 24 hours), a
    week of days, a year of weeks, months or quarters; 1 (no season) for years."""
    offset = to_offset(frequency)
    name = offset.rule_code.split("-")[0]
    if name in {"h", "min", "s", "ms", "us", "ns", "H", "T", "S"}:
        step = pd.Timedelta(offset)  # a fixed step
        return max(1, int(pd.Timedelta(days=1) / step))
    return {"D": 7, "B": 5, "W": 52, "MS": 12, "ME": 12, "M": 12, "QS": 4, "QE": 4, "Q": 4,
            "YS": 1, "YE": 1, "Y": 1, "A": 1, "AS": 1}.get(name, 1)


# ------------------------------------------------------------------------ readers
# Each reader gives the start of every value's period, NaT where a value is not in its form.


def _naive(values: pd.Series) -> pd.Series:
    """One clock for every step: UTC, then naive."""
    if getattr(values.dt, "tz", None) is not None:
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def _years(column: pd.Series) -> ParsedTimes | None:
    """Whole numbers 1000–2999 as the years they name (asked for where a column is the time
    column by name: ``years=True``); None when the column holds other numbers."""
    present = column.dropna()
    whole = (present == present.round()) & (present >= 1000) & (present <= 2999)
    if not len(present) or not whole.all():
        return None
    values = pd.to_datetime(column.astype("Int64").astype("string") + "-01-01", errors="coerce")
    return ParsedTimes(pd.Series(values, index=column.index).astype("datetime64[ns]"), "year", ())


def _timestamp_form(values: pd.Series) -> TimeForm:
    clock = values.dropna()
    return "date" if len(clock) and (clock == clock.dt.normalize()).all() else "timestamp"


def _read_periods(text: pd.Series) -> pd.Series:
    """Months, quarters and weeks, value by value (the first form that reads a value wins)."""
    return _by_value(text, _period)


def _period(value: str) -> pd.Timestamp | None:
    return _quarter(value) or _week(value) or _month_name(value) or _year_month(value)


def _quarter(value: str) -> pd.Timestamp | None:
    found = _QUARTER.match(value)
    if not found:
        return None
    year, quarter = (found[1], found[2]) if found[1] else (found[4], found[3])
    return _start(int(year), (int(quarter) - 1) * 3 + 1)


def _week(value: str) -> pd.Timestamp | None:
    found = _WEEK.match(value)
    if not found or _start(int(found[1]), 1) is None:
        return None
    try:
        return pd.Timestamp(date.fromisocalendar(int(found[1]), int(found[2]), 1))  # the week's Monday
    except ValueError:  # week 0, or 53 in a year of 52
        return None


def _month_name(value: str) -> pd.Timestamp | None:
    found = _MONTH_NAME.match(value)
    if not found:
        return None
    year, name = (found[1], found[2]) if found[1] else (found[4], found[3])
    month = next((i + 1 for i, full in enumerate(_MONTH_NAMES) if full.startswith(name.lower())), None)
    return None if month is None else _start(int(year), month)  # a month's name or 3+ letters of it


def _year_month(value: str) -> pd.Timestamp | None:
    found = _YEAR_MONTH.match(value)
    return _start(int(found[1]), int(found[2])) if found else None


def _start(year: int, month: int) -> pd.Timestamp | None:
    """The month's first day, if nanosecond times hold it (years 1678–2261)."""
    if not (1678 <= year <= 2261 and 1 <= month <= 12):
        return None
    return pd.Timestamp(year=year, month=month, day=1)


def _by_value(text: pd.Series, reader: Callable[[str], pd.Timestamp | None]) -> pd.Series:
    """``reader`` applied once per distinct value (periods repeat: a table has few distinct ones)."""
    found = {value: reader(str(value)) for value in pd.unique(text.dropna())}
    return pd.Series([found.get(value) if isinstance(value, str) else None for value in text],
                     index=text.index, dtype="datetime64[ns]")


def _form_reader(reader: Callable[[str], pd.Timestamp | None]) -> Callable[[pd.Series, str | None], pd.Series]:
    def read(text: pd.Series, _: str | None) -> pd.Series:
        return _by_value(text, reader)
    return read


def _timestamps(text: pd.Series, time_format: str | None) -> pd.Series:
    """Timestamps in the one format that reads most of them: ISO 8601, the format of the first
    value month-first, then day-first; values in mixed formats each in its own as a last resort."""
    if time_format is not None:
        return _to_datetime(text, format=time_format, utc=True)
    none = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    if text.str.contains(r"\d", regex=True).mean() < FORM_SHARE:
        return none
    best = none
    for options in ({"format": "ISO8601"}, {}, {"dayfirst": True}, {"format": "mixed"}):
        parsed = _to_datetime(text, utc=True, **options)
        if parsed.notna().sum() > best.notna().sum():
            best = parsed
        if best.notna().all():
            break
    return best


def _to_datetime(text: pd.Series, **options: Any) -> pd.Series:
    """``pd.to_datetime`` as naive nanosecond times, unreadable values (and years that nanoseconds
    cannot hold, such as a lenient parser's year 234) as NaT, never an exception or a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": the share parsed decides
        try:
            parsed = pd.Series(pd.to_datetime(text, errors="coerce", **options), index=text.index)
        except (ValueError, TypeError, OverflowError):  # offsets that differ between rows: in UTC
            if options.get("utc"):
                return pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
            parsed = pd.Series(pd.to_datetime(text, errors="coerce", utc=True, **options), index=text.index)
    return _in_nanoseconds(_naive(parsed))


def _in_nanoseconds(parsed: pd.Series) -> pd.Series:
    """Naive times as ``datetime64[ns]``, those that nanoseconds cannot hold as NaT."""
    inside = parsed.isna() | ((parsed >= pd.Timestamp.min) & (parsed <= pd.Timestamp.max))
    return parsed.where(inside).astype("datetime64[ns]")


_READERS: tuple[tuple[TimeForm, Callable[[pd.Series, str | None], pd.Series]], ...] = (
    ("quarter", _form_reader(_quarter)), ("week", _form_reader(_week)), ("month", _form_reader(_month_name)),
    ("month", _form_reader(_year_month)), ("timestamp", _timestamps),
)
