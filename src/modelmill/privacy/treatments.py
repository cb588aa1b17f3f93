"""The privacy policy's treatments of values: hash, mask, generalise (bands, dates, prefixes)
and scrub, one value at a time (a request's record) and a column at a time (a table).

Values are read as the CSV reader and the features read them (:func:`plain_string`): text
is stripped, and the missing markers ("", "NA", "null" …) are missing values, which stay
missing. So " 10234" hashes like "10234", and "NA" is never hashed into a pseudonym.

A column is treated once per distinct value, then mapped back: identifiers, postcodes and
dates repeat, and the per-value work (an HMAC, a scrub, a date parse) is what costs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from modelmill.data.values import as_strings, plain_string
from modelmill.privacy.detectors import scrub_text
from modelmill.privacy.keys import hash_token

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MASK = "*"
_SNAP_ULPS = 4.0  # a band edge divided by its width lands within a few ulps of the integer
_SNAP_FLOOR = 1e-9  # and within this of it for small quotients (0.3 / 0.1 = 2.9999999999999996)


class Unreadable(Exception):
    """A value a treatment cannot read (its message never holds the value)."""


Treat = Callable[[Any], Any]


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def text_of(value: Any) -> str | None:
    """A value as text, the same whichever way it came (10234, 10234.0, " 10234"); None for
    a missing value or a missing marker, as :func:`plain_string` reads them."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return str(int(number)) if math.isfinite(number) and number.is_integer() else repr(number)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return plain_string(value)


def _missing_as(value: Any) -> Any:
    """What a missing value becomes: itself (None, NaN), a marker ("NA") None."""
    return value if is_missing(value) else None


# ------------------------------------------------------------------ hash, mask, truncate, scrub


def hash_value(key: bytes, value: Any) -> Any:
    """Every value hashed, a hash-shaped one too: a client must not pass for a pseudonym."""
    text = text_of(value)
    return _missing_as(value) if text is None else hash_token(key, text)


def mask_value(value: Any, keep_last: int) -> Any:
    """Letters and digits masked but the last ``keep_last``, and never more than half of
    them ("12" with keep_last 4: "*2"); an e-mail keeps its domain only. A ``*`` counts
    as a masked letter, so a masked value masks to itself."""
    text = text_of(value)
    if text is None:
        return _missing_as(value)
    if _EMAIL.fullmatch(text):
        local, _, domain = text.rpartition("@")
        return "".join(_MASK if c.isalnum() else c for c in local) + "@" + domain
    positions = [i for i, c in enumerate(text) if c.isalnum() or c == _MASK]
    shown = min(keep_last, len(positions) // 2)
    kept = set(positions[len(positions) - shown:]) if shown else set()
    return "".join(_MASK if c.isalnum() and i not in kept else c for i, c in enumerate(text))


def truncate_value(value: Any, keep: int) -> Any:
    text = text_of(value)
    return _missing_as(value) if text is None else text[:keep]


def scrub_value(value: Any) -> Any:
    text = text_of(value)
    return _missing_as(value) if text is None else scrub_text(text)


# ------------------------------------------------------------------ number bands


def width_decimals(width: float) -> int:
    """The decimals of a band width as written (0.1: 1, 0.25: 2, 10: 0)."""
    exponent = Decimal(repr(float(width))).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def band_value(value: Any, width: float, decimals: int) -> Any:
    """The lower edge of the band of ``value``; a non-finite number is missing (None)."""
    if isinstance(value, (bool, np.bool_)):
        raise Unreadable
    if isinstance(value, str):
        text = plain_string(value)
        if text is None:
            return None
        value = text
    elif is_missing(value):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Unreadable from None
    if not math.isfinite(number):
        return None
    quotient = number / width
    if not math.isfinite(quotient):
        raise Unreadable  # 1e308 in bands of 0.5: no band to name
    nearest = round(quotient)
    if abs(quotient - nearest) <= max(_SNAP_FLOOR, _SNAP_ULPS * math.ulp(quotient)):
        quotient = nearest
    # numpy's rounding, not round(): the same band as band_column's to the last bit
    return float(np.round(math.floor(quotient) * width, decimals))


def band_column(numbers: np.ndarray, width: float, decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`band_value` of a float column: the bands (NaN for missing and non-finite), and
    the rows whose quotient overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        quotient = numbers / width
        nearest = np.round(quotient)
        tolerance = np.maximum(_SNAP_FLOOR, _SNAP_ULPS * np.spacing(np.abs(quotient)))
        snapped = np.where(np.abs(quotient - nearest) <= tolerance, nearest, quotient)
        bands = np.round(np.floor(snapped) * width, decimals)
    finite = np.isfinite(numbers)
    overflow = np.flatnonzero(finite & ~np.isfinite(quotient))
    return np.where(finite, bands, np.nan), overflow


# ------------------------------------------------------------------ dates


def _coarsen(stamps: pd.Series, to: str) -> pd.Series:
    day = stamps.dt.normalize()
    if to == "month":
        return day - pd.to_timedelta(day.dt.day - 1, unit="D")
    if to == "year":
        return day - pd.to_timedelta(day.dt.dayofyear - 1, unit="D")
    return day


def date_column(column: pd.Series, to: str, date_format: str | None) -> tuple[list[Any], list[int]]:
    """Dates read once for the whole column, as the date feature reads them (its format, or
    any ISO-like form; offsets to UTC), coarsened to ``to`` and written back in the same
    format: the values (None for missing) and the rows that are not dates."""
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column
        text = column.astype(object).where(column.notna(), None)
    else:
        text = as_strings(column)
        try:
            parsed = pd.to_datetime(text, format=date_format or "mixed", errors="coerce")
        except (ValueError, OverflowError):  # offsets that differ between rows: compare them all in UTC
            parsed = pd.to_datetime(text, format=date_format or "mixed", errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = (parsed.isna() & text.notna()).to_numpy()
    written = _coarsen(parsed, to).dt.strftime(date_format or "%Y-%m-%d")
    values = [None if pd.isna(v) else str(v) for v in written]
    return values, np.flatnonzero(bad).tolist()


def date_value(value: Any, to: str, date_format: str | None) -> Any:
    """One date as :func:`date_column` treats it: the plain formats by ``strptime`` and
    ``fromisoformat`` (a request's record is one value; pandas costs ~0.3 ms a call), any
    other form by the column's own path, so both give the same."""
    if isinstance(value, (datetime, date, pd.Timestamp)) and not is_missing(value):
        values, bad = date_column(pd.Series([pd.Timestamp(value)]), to, date_format)
    else:
        text = text_of(value)
        if text is None:
            return _missing_as(value)
        quick = _quick_date(text, date_format)
        if quick is not None:
            return _coarse_quick(quick, to).strftime(date_format or "%Y-%m-%d")
        values, bad = date_column(pd.Series([text], dtype=object), to, date_format)
    if bad:
        raise Unreadable
    return values[0]


def _quick_date(text: str, date_format: str | None) -> datetime | None:
    try:
        parsed = datetime.strptime(text, date_format) if date_format else datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is None else None  # an offset: to UTC, as the column path does


def _coarse_quick(stamp: datetime, to: str) -> datetime:
    day = datetime(stamp.year, stamp.month, stamp.day)
    if to == "month":
        return day.replace(day=1)
    if to == "year":
        return day.replace(month=1, day=1)
    return day


def treatment_of(entry: dict[str, object], key: bytes | None, date_format: str | None = None) -> Treat:
    """The treatment of one column from its action's JSON (a policy's ``state()["columns"]``
    entry, as a bundle or the prediction store keep it): for a door that has the stored
    policy only, such as ``modelmill log labels --key``. ``drop`` and an unknown action keep
    the value (nothing is stored for a dropped column)."""
    action = entry.get("action")
    if action == "hash":
        if key is None:
            raise ValueError("hash needs the key")
        return lambda value: hash_value(key, value)
    if action == "mask":
        keep_last = int(str(entry.get("keep_last", 4)))
        return lambda value: mask_value(value, keep_last)
    if action == "generalise" and entry.get("width") is not None:
        width = float(str(entry["width"]))
        decimals = width_decimals(width)
        return lambda value: band_value(value, width, decimals)
    if action == "generalise" and entry.get("to") is not None:
        to = str(entry["to"])
        return lambda value: date_value(value, to, date_format)
    if action == "generalise" and entry.get("keep") is not None:
        keep = int(str(entry["keep"]))
        return lambda value: truncate_value(value, keep)
    return lambda value: value
