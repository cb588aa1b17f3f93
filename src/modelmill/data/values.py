"""How raw cell values are read: missing markers, numbers and dates, one rule for every
stage (schema inference, validation, cleaning, features), so they cannot disagree."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelmill.errors import DataError

MISSING_MARKERS = frozenset({"", "?", "-", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"})


# Below this many rows a Python loop beats pandas' vectorised string methods, whose fixed
# cost (~0.1 ms a call) dominates an online request of a few records.
SMALL_COLUMN = 32


def as_strings(column: pd.Series) -> pd.Series:
    """Values as stripped strings, with missing markers turned into NA (string dtype)."""
    if len(column) <= SMALL_COLUMN and not pd.api.types.is_datetime64_any_dtype(column):
        return pd.Series([plain_string(v) for v in column], index=column.index, dtype="string")
    text = column.astype("string").str.strip()
    return text.mask(text.isin(MISSING_MARKERS))


def plain_string(value: object) -> str | None:
    """One cell as :func:`as_strings` reads it (same result as its vectorised path)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return None if text in MISSING_MARKERS else text


def as_numbers(column: pd.Series, *, feature: str) -> np.ndarray:
    """Values as float64 with NaN for missing, ±inf read as missing too (no scaling, bin, split
    or loss can use an infinity: inf − inf made a fitted mean NaN); words in a number column
    are a DataError."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return _finite(column.to_numpy(dtype="float64", na_value=np.nan))
    text = as_strings(column)
    numbers = pd.to_numeric(text, errors="coerce")
    bad = numbers.isna() & text.notna()
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        examples = ", ".join(repr(v) for v in text[bad].unique()[:3])
        raise DataError(
            f"is a number feature but holds {int(bad.sum())} values that are not numbers "
            f"(e.g. {examples}). Fix: clean those values, or declare the column as "
            f"`type: category`",
            column=feature,
            rows=rows.tolist(),
        )
    return _finite(numbers.to_numpy(dtype="float64", na_value=np.nan))


def _finite(values: np.ndarray) -> np.ndarray:
    """``values`` with ±inf as NaN (a new array only when there is one: never the frame's own)."""
    infinite = np.isinf(values)
    return np.where(infinite, np.nan, values) if infinite.any() else values
