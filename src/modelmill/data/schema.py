"""Schema inference: what kind of column each column of a frame is, and why.

The kinds are the feature types of the config (number, category, binary, date, text) plus
the kinds of column that are no use as features: ``identifier`` (a distinct value per row),
``empty`` (every value missing) and ``constant`` (one value). Every verdict carries a short
human reason, so that ``modelmill init`` can explain itself in the config it writes.

Everything here is cheap on a million rows: one hashing pass over the column
(``value_counts``), and the expensive checks (date parsing) on a sample of the distinct
values, weighted by how often they occur.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from modelmill.data.image_values import is_missing
from modelmill.data.images import IMAGE_EXTENSIONS
from modelmill.data.times import FORM_SHARE, parse_times
from modelmill.data.values import MISSING_MARKERS

Kind = Literal["number", "category", "binary", "date", "text", "image", "identifier", "empty", "constant"]

FEATURE_KINDS: frozenset[str] = frozenset({"number", "category", "binary", "date", "text", "image"})
"""The kinds that are feature types of the config; the others are left out."""

SAMPLE_SIZE = 1000  # distinct values parsed by the expensive checks (dates)
MAJORITY = 0.95  # share of values that must parse for a text column to count as numbers/dates
MIN_ROWS_FOR_PATTERNS = 20  # fewer rows say too little to call a column an identifier or text

_ID_NAMES = frozenset({"id", "uuid", "guid", "index", "idx", "key", "rowid", "row_id", "rownum"})
_ID_SUFFIX = re.compile(r"[_\s.-](id|uuid|guid|key|no)$")
_ID_CAMEL = re.compile(r"[a-z](Id|ID|Uuid|UUID|Key)$")
_LOOKS_LIKE_DATE = re.compile(r"^(?=.*\d)(?=.*[-/:]).{6,}$")  # a digit, a separator, 6+ chars
_PURE_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?$")
_LEADING_ZERO = re.compile(r"^0\d")  # "02134": a code (zip, account), not a quantity
_FORM_NOUNS = {"timestamp": "dates", "date": "dates", "month": "months (2019 Jan)",
               "quarter": "quarters (2019 Q3)", "week": "ISO weeks (2019 W07)"}


@dataclass(frozen=True)
class ColumnInfo:
    """What one column is, and why.

    Attributes:
        name: The column name (as a string).
        kind: The inferred kind: a feature type, or identifier / empty / constant.
        reason: A short human sentence saying why, e.g. ``"73 distinct integers from 17 to 90"``.
        n_missing: Missing values (NA, or a string that is empty after stripping).
        n_unique: Distinct present values (strings compared after stripping).
        examples: Up to 3 present values as strings, the most frequent first.
        n_invalid: Present values that do not parse as the kind (text in a number column,
            words in a date column); for dates estimated from the sample.
    """

    name: str
    kind: Kind
    reason: str
    n_missing: int
    n_unique: int
    examples: tuple[str, ...] = ()
    n_invalid: int = 0

    @property
    def usable(self) -> bool:
        """Whether the kind is a feature type (so the column can be a feature)."""
        return self.kind in FEATURE_KINDS


def infer_schema(frame: pd.DataFrame) -> list[ColumnInfo]:
    """The inferred kind of every column of ``frame``, in column order.

    Args:
        frame: The data, one column per feature candidate.

    Returns:
        One :class:`ColumnInfo` per column.
    """
    return [infer_column(frame.iloc[:, i], str(name)) for i, name in enumerate(frame.columns)]


def infer_column(series: pd.Series, name: str) -> ColumnInfo:
    """The inferred kind of one column.

    Args:
        series: The column's values.
        name: The column's name (used in the result and by the identifier-name rule).

    Returns:
        The column's :class:`ColumnInfo`.
    """
    images = _image_info(series, name)
    if images is not None:
        return images
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if pd.api.types.is_timedelta64_dtype(series.dtype):
        series = series.dt.total_seconds()
    if pd.api.types.is_bool_dtype(series.dtype):
        return _from_counts(name, _counts(series), _bool_kind)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _from_counts(name, _counts(series), _datetime_kind)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype):
        counts = _counts(series)
        return _from_counts(name, counts, lambda c: _numeric_kind(series, name, c))
    return _from_counts(name, _string_counts(series), lambda c: _string_kind(series, name, c))


# ------------------------------------------------------------------------- counting


@dataclass(frozen=True)
class _Counts:
    """Distinct present values with their counts (most frequent first), and the missing."""

    values: pd.Series  # index: distinct value, value: count
    n_missing: int
    n_rows: int

    @property
    def n_present(self) -> int:
        return self.n_rows - self.n_missing

    @property
    def n_unique(self) -> int:
        return len(self.values)

    def examples(self, k: int = 3) -> tuple[str, ...]:
        return tuple(_show(v) for v in self.values.index[:k])


# A rule returns (kind, reason, n_invalid) from the counts of a column.
_Verdict = tuple[Kind, str, int]
_Rule = Callable[["_Counts"], _Verdict]


def _counts(series: pd.Series) -> _Counts:
    values = series.value_counts(dropna=True)
    return _Counts(values=values[values > 0], n_missing=int(series.isna().sum()), n_rows=len(series))


def _string_counts(series: pd.Series) -> _Counts:
    """Counts of the stripped string form; missing markers ("", "?", "NA", ...) count as missing,
    by the same rule as every later stage (``data.values.MISSING_MARKERS``)."""
    try:
        merged = _stripped_counts(series.value_counts(dropna=True))
    except TypeError:  # unhashable values (lists, dicts from JSON)
        merged = _stripped_counts(series.dropna().astype(str).value_counts())
    markers = merged.index.isin(list(MISSING_MARKERS))
    blank = int(merged[markers].sum())
    values = merged[~markers]
    return _Counts(values=values, n_missing=int(series.isna().sum()) + blank, n_rows=len(series))


def _stripped_counts(raw: pd.Series) -> pd.Series:
    """Counts merged over values that are equal once stripped, most frequent first."""
    text = raw.index.astype(str)
    stripped = text.str.strip()
    if stripped.equals(text):  # the usual case: nothing to merge
        return pd.Series(raw.to_numpy(), index=pd.Index(stripped, dtype=object))
    merged = raw.groupby(stripped.to_numpy(dtype=object), sort=False).sum()
    return merged.sort_values(ascending=False, kind="stable")


def _image_info(series: pd.Series, name: str) -> ColumnInfo | None:
    """Decoded images (2-D/3-D arrays, as IDX and NPZ give) or paths of image files."""
    if series.dtype != object and not pd.api.types.is_string_dtype(series.dtype):
        return None
    present = [cell for cell in series.head(SAMPLE_SIZE) if not is_missing(cell)]
    if not present:
        return None
    n_missing = int(sum(is_missing(cell) for cell in series))
    if all(isinstance(cell, np.ndarray) and cell.ndim in (2, 3) for cell in present):
        shape = "x".join(str(d) for d in present[0].shape)
        return ColumnInfo(name=name, kind="image", reason=f"decoded images ({shape} pixels)",
                          n_missing=n_missing, n_unique=len(series) - n_missing)
    paths = [cell for cell in present if isinstance(cell, str)]
    with_extension = sum(PurePosixPath(p.strip().lower()).suffix in IMAGE_EXTENSIONS for p in paths)
    if paths and with_extension >= MAJORITY * len(present):
        return ColumnInfo(name=name, kind="image", reason="paths of image files", n_missing=n_missing,
                          n_unique=len(series) - n_missing, examples=tuple(paths[:3]))
    return None


def _from_counts(name: str, counts: _Counts, rule: _Rule) -> ColumnInfo:
    """Empty and constant columns first, then the rule of the column's dtype."""
    if counts.n_unique == 0:
        reason = "no rows" if counts.n_rows == 0 else f"all {counts.n_rows:,} values are missing"
        kind: Kind = "empty"
        n_invalid = 0
    elif counts.n_unique == 1:
        kind, reason, n_invalid = "constant", f"a single value: {counts.examples(1)[0]}", 0
    else:
        kind, reason, n_invalid = rule(counts)
    return ColumnInfo(
        name=name, kind=kind, reason=reason, n_missing=counts.n_missing,
        n_unique=counts.n_unique, examples=counts.examples(), n_invalid=n_invalid,
    )


# ----------------------------------------------------------------- typed columns


def _bool_kind(counts: _Counts) -> _Verdict:
    return "binary", _two_values(counts), 0


def _datetime_kind(counts: _Counts) -> _Verdict:
    low, high = counts.values.index.min(), counts.values.index.max()
    return "date", f"{counts.n_unique:,} distinct dates from {_show(low)} to {_show(high)}", 0


def _numeric_kind(series: pd.Series, name: str, counts: _Counts, *, note: str = "") -> _Verdict:
    """Numbers: binary with two values, identifier when they number the rows, else number."""
    distinct = counts.values.index.to_numpy(dtype="float64")
    whole = bool(np.all(np.mod(distinct, 1) == 0))
    noun = "integers" if whole else "numbers"
    if whole and _numbers_rows(series, name, counts):
        why = "named like one" if _named_like_id(name) else "a consecutive or sorted range"
        reason = f"{counts.n_unique:,} distinct {noun} in {counts.n_rows:,} rows, {why}"
        return "identifier", f"{reason}{note}: looks like an identifier", 0
    if counts.n_unique == 2:
        return "binary", f"{_two_values(counts)}{note}", 0
    low, high = _show(distinct.min()), _show(distinct.max())
    return "number", f"{counts.n_unique:,} distinct {noun} from {low} to {high}{note}", 0


def _numbers_rows(series: pd.Series, name: str, counts: _Counts) -> bool:
    """Integers unique for every row that are a row number: by name, or consecutive/sorted."""
    if counts.n_missing or counts.n_unique != counts.n_rows or counts.n_rows < 3:
        return False
    if _named_like_id(name):
        return True
    if counts.n_rows < MIN_ROWS_FOR_PATTERNS:
        return False
    distinct = counts.values.index.to_numpy(dtype="float64")
    consecutive = distinct.max() - distinct.min() + 1 == counts.n_rows
    return bool(consecutive or series.is_monotonic_increasing or series.is_monotonic_decreasing)


def _named_like_id(name: str) -> bool:
    lowered = name.strip().lower()
    return (
        lowered in _ID_NAMES
        or "uuid" in lowered
        or bool(_ID_SUFFIX.search(lowered) or _ID_CAMEL.search(name.strip()))
    )


# ------------------------------------------------------------------- text columns


def _string_kind(series: pd.Series, name: str, counts: _Counts) -> _Verdict:
    """Strings: numbers or dates written as text, binary, free text, identifier, category."""
    numbers = _as_numbers(series, name, counts)
    if numbers is not None:
        return numbers
    dates = _as_dates(counts)
    if dates is not None:
        return dates
    if counts.n_unique == 2:
        return "binary", _two_values(counts), 0
    sample, weights = _sample(counts)
    words = float(np.average(sample.str.split().str.len(), weights=weights))
    length = float(np.average(sample.str.len(), weights=weights))
    unique_share = counts.n_unique / counts.n_present
    if _is_free_text(counts, words, length, unique_share):
        return "text", f"{counts.n_unique:,} distinct values, {words:.1f} words on average: free text", 0
    if _is_identifier(name, counts, sample, weights, unique_share):
        return "identifier", (
            f"{counts.n_unique:,} distinct values in {counts.n_present:,} rows: looks like an identifier"
        ), 0
    shown = ", ".join(counts.examples())
    return "category", f"{counts.n_unique:,} distinct values, e.g. {shown}", 0


def _as_numbers(series: pd.Series, name: str, counts: _Counts) -> _Verdict | None:
    """Number (or binary/identifier) when almost every value parses as a float, else None."""
    sample, weights = _sample(counts)  # a cheap look first: most text columns are words
    parsed = pd.to_numeric(sample, errors="coerce").to_numpy(dtype="float64")
    if float(weights[~np.isnan(parsed)].sum()) < MAJORITY * float(weights.sum()):
        return None
    text = pd.Series(counts.values.index.astype(str))
    parsed = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64")
    ok = ~np.isnan(parsed)
    weights = counts.values.to_numpy()
    share = float(weights[ok].sum()) / counts.n_present
    if share < MAJORITY or _mostly_codes(text[ok], weights[ok]):
        return None
    n_bad = counts.n_present - int(weights[ok].sum())
    note = " (written as text)"
    if n_bad:
        bad = ", ".join(repr(v) for v in text[~ok][:3])
        note += f"; not numbers: {_plural(n_bad, 'value')} ({n_bad / counts.n_present:.1%}), e.g. {bad}"
    numbers = pd.Series(weights[ok], index=pd.Index(parsed[ok])).groupby(level=0).sum()
    if len(numbers) < 2:
        return None  # one number and some words: the words are what varies
    numeric = _Counts(values=numbers.sort_values(ascending=False), n_missing=counts.n_missing,
                      n_rows=counts.n_rows)
    # The identifier rule needs the values in row order; only then is the column parsed whole.
    in_rows = _parse_rows(series) if numeric.n_unique == numeric.n_rows else pd.Series(dtype="float64")
    kind, reason, _ = _numeric_kind(in_rows, name, numeric, note=note)
    return kind, reason, n_bad


def _parse_rows(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.astype(str).str.strip(), errors="coerce")


def _mostly_codes(text: pd.Series, weights: np.ndarray) -> bool:
    """Whether the values are codes with leading zeros (zip codes), which are not quantities."""
    leading = text.str.match(_LEADING_ZERO).to_numpy(dtype=bool)
    return float(weights[leading].sum()) > 0.05 * float(weights.sum())


def _as_dates(counts: _Counts) -> _Verdict | None:
    """Date when almost every sampled value parses as a time (:func:`parse_times`: timestamps,
    dates, months, quarters, ISO weeks), else None. Timestamps and dates must also look like
    one (a digit and a separator), so that codes and words that a lenient parser reads are not."""
    sample, weights = _sample(counts)
    parsed = parse_times(sample, share=FORM_SHARE)
    if parsed is None:
        return None
    ok = np.array(parsed.values.notna(), dtype=bool)
    if parsed.form in ("timestamp", "date"):
        ok &= (sample.str.match(_LOOKS_LIKE_DATE) & ~sample.str.match(_PURE_NUMBER)).to_numpy(dtype=bool)
    share = float(weights[ok].sum()) / float(weights.sum())
    if share < MAJORITY:
        return None
    noun = _FORM_NOUNS[parsed.form]
    reason = f"{counts.n_unique:,} distinct values that parse as {noun}, e.g. {counts.examples(1)[0]}"
    n_bad = round((1 - share) * counts.n_present)
    if n_bad:
        about = "about " if counts.n_unique > SAMPLE_SIZE else ""
        bad = ", ".join(repr(v) for v in sample[~ok][:3])
        reason += f"; not dates: {about}{_plural(n_bad, 'value')} ({1 - share:.1%}), e.g. {bad}"
    return "date", reason, n_bad


def _is_free_text(counts: _Counts, words: float, length: float, unique_share: float) -> bool:
    many = counts.n_unique >= MIN_ROWS_FOR_PATTERNS and (unique_share >= 0.2 or counts.n_unique >= 1000)
    long = words >= 4 or length >= 40
    # Nearly every value distinct and several words each (titles, names): words carry more
    # than the whole value, which a category would only ever see once.
    phrases = words >= 2 and unique_share >= MAJORITY and counts.n_present >= MIN_ROWS_FOR_PATTERNS
    return (many and long) or phrases


def _is_identifier(
    name: str, counts: _Counts, sample: pd.Series, weights: np.ndarray, unique_share: float
) -> bool:
    """Short tokens (no spaces), distinct for (nearly) every row, or named like an id."""
    tokens = ~sample.str.contains(r"\s", regex=True).to_numpy(dtype=bool)
    short = float(weights[tokens].sum()) >= MAJORITY * float(weights.sum())
    if _named_like_id(name) and counts.n_unique == counts.n_present and counts.n_present >= 3:
        return True
    return short and unique_share >= MAJORITY and counts.n_present >= MIN_ROWS_FOR_PATTERNS


def _sample(counts: _Counts) -> tuple[pd.Series, np.ndarray]:
    """Up to SAMPLE_SIZE distinct values as strings, drawn by frequency, with their counts."""
    weights = counts.values.to_numpy(dtype="float64")
    index = np.arange(counts.n_unique)
    if counts.n_unique > SAMPLE_SIZE:
        rng = np.random.default_rng(0)  # fixed: the same data always gets the same verdict
        index = np.sort(rng.choice(index, size=SAMPLE_SIZE, replace=False, p=weights / weights.sum()))
    values = pd.Series([str(v) for v in counts.values.index[index]], dtype=object)
    return values, weights[index]


# ----------------------------------------------------------------------- helpers


def _two_values(counts: _Counts) -> str:
    return f"2 distinct values: {', '.join(sorted(_show(v) for v in counts.values.index))}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _show(value: object, width: int = 30) -> str:
    """A value as a short one-line string (whole floats without ".0")."""
    if isinstance(value, (float, np.floating)):
        text = str(int(value)) if float(value).is_integer() else f"{float(value):.6g}"
    elif isinstance(value, pd.Timestamp):
        text = value.isoformat(sep=" ").removesuffix(" 00:00:00")
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
