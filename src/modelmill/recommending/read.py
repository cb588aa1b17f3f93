"""A table of interactions read into checked :class:`Interactions`: ids as strings, ratings
filtered, weights and times read, repeated (user, item) pairs merged or refused, and the user
and item feature columns collected, one row per user and per item.

Every error names the source, the column and the rows (numbered from 1, as in the file) and
says how to fix it; what is read but worth knowing (duplicates merged, rows weighing 0) comes
back as warnings.

Ids are compared as they are once the table is read: a column the reader takes for numbers
has lost its leading zeros, so ids ``"007"`` and ``"7"`` both read as ``7`` are one id. Fix
for users whose ids have leading zeros: quote them in the file, or use ids that are not
numbers (``u007``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from modelmill.config.recommend import InteractionsConfig, RecommendConfig
from modelmill.data.times import parse_times
from modelmill.errors import DataError
from modelmill.recommending.interactions import Interactions

__all__ = ["as_id", "as_ids", "read_interactions", "read_new_interactions"]

_SHOWN = 5  # examples named in a message


def as_ids(values: pd.Series | Sequence[object]) -> pd.Series:
    """Ids as strings, so that ``42``, ``42.0`` and ``"42"`` are one id: whole numbers written
    without ``.0`` (a CSV column of ids with a gap is read as floats), text stripped; missing
    values (None, NaN, blank) as NA."""
    column = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if pd.api.types.is_bool_dtype(column):
        return column.astype("string")
    if pd.api.types.is_integer_dtype(column):  # int64, uint64 above the int64 range, nullable Int64
        return column.astype("string")
    if pd.api.types.is_float_dtype(column):
        numbers = column.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) < 2.0**53)  # exact ints
        text = column.astype("string")
        text[whole] = pd.Series(numbers[whole].astype(np.int64), index=column.index[whole]).astype("string")
        return text.mask(column.isna())
    if isinstance(column.dtype, pd.StringDtype) or pd.api.types.infer_dtype(column, skipna=True) == "string":
        text = column.astype("string").str.strip()  # text (a CSV's column, or Python strings): vectorised
        return text.mask(text == "")
    return pd.Series([as_id(v) for v in column], index=column.index, dtype="string")  # mixed values: one by one


def read_interactions(frame: pd.DataFrame, config: RecommendConfig, *, source: str) -> tuple[Interactions, list[str]]:
    """The interactions of ``frame`` as ``config.interactions`` names them, checked.

    Users are those with an interaction kept (after ``min_rating`` and rows weighing 0); the
    catalogue is every item of the table, those rated below ``min_rating`` included (they can
    still be recommended, and their features describe them). ``min_rating`` filters rows, not
    pairs: a user who rated an item 5 and later rated it 2 keeps the 5 as a positive (the later
    row below ``min_rating`` is dropped, it does not cancel the earlier one).

    Returns:
        The interactions, one per (user, item) pair, and the warnings (duplicates merged, rows
        weighing 0 dropped, feature values that vary). The pairs are in the order of the row
        that gave each its time: its latest row (of those at its latest time, the last; without
        a time column, its last row), so that the holdout, which breaks ties in time by this
        order, sees a merged pair where its latest row was.

    Raises:
        DataError: A column missing; missing ids; ratings or weights that are not numbers;
            negative weights; times that do not read; nothing left after ``min_rating``; one user
            or one item only; repeated (user, item) pairs under ``duplicates: refuse``.
    """
    spec = config.interactions
    rows = _read_rows(frame, spec, source)
    if not rows.keep.any():
        raise DataError(_nothing_left(spec), source=source)
    user_ids, user_codes = _space(rows.users, rows.keep)
    item_ids, item_codes = _space(rows.items, np.ones(len(rows.items), dtype=bool))
    for role, ids in (("user", user_ids), ("item", item_ids)):
        if len(ids) < 2:
            raise DataError(f"the interactions hold one {role} only ({ids[0]!r}): a recommender ranks many items "
                            "for many users. Fix: use the whole interaction table, or check interactions."
                            f"{role} names the {role}-id column", source=source, column=getattr(spec, role))
    return _assemble(rows, frame, spec, (user_ids, user_codes), (item_ids, item_codes), source)


def read_new_interactions(frame: pd.DataFrame, config: RecommendConfig, user_ids: Sequence[str],
                          item_ids: Sequence[str], *, source: str) -> tuple[Interactions, list[str]]:
    """New interactions for a bundle's id spaces (a refresh): users it does not know are
    appended (codes ≥ ``len(user_ids)``, in the order of their ids), items it does not know are
    dropped with a warning (the model cannot rank them).

    The feature frames hold this table's values, one row per code of the (grown) id spaces, NA
    where the table says nothing about a user or item.

    Raises:
        DataError: As :func:`read_interactions` (one user or one item is fine here), and when no
            interaction with a known item is left.
    """
    spec = config.interactions
    rows = _read_rows(frame, spec, source)
    if not rows.keep.any():
        raise DataError(_nothing_left(spec), source=source)
    item_codes = _codes(rows.items, list(item_ids))
    unknown = rows.keep & (item_codes < 0)
    if unknown.any():
        shown = ", ".join(repr(str(i)) for i in pd.unique(rows.items[unknown])[:_SHOWN])
        if unknown.sum() == rows.keep.sum():
            raise DataError(f"none of the {int(unknown.sum())} interaction(s) is with an item the model knows "
                            f"({shown}, …). Fix: check that interactions.item names the same ids as the training "
                            "data, or retrain to add the new items", source=source, column=spec.item)
        rows.warnings.append(f"{int(unknown.sum())} interaction(s) with items the model does not know ({shown}) "
                             "were dropped: it cannot rank them. Retrain to add them to the catalogue")
        rows.keep = rows.keep & ~unknown
    known_users = _codes(rows.users, list(user_ids))
    added, _ = _space(rows.users, rows.keep & (known_users < 0))  # new users, sorted as strings
    users = list(user_ids) + added
    return _assemble(rows, frame, spec, (users, _codes(rows.users, users)), (list(item_ids), item_codes), source)


# ------------------------------------------------------------------------- rows


@dataclass
class _Rows:
    """The table's rows, column by column (row i is the table's row i + 1)."""

    users: np.ndarray  # (rows,) object: str
    items: np.ndarray  # (rows,) object: str
    weights: np.ndarray  # (rows,) float64
    times: np.ndarray | None  # (rows,) float64 seconds since 1970
    keep: np.ndarray  # (rows,) bool: rated at least min_rating and weighing more than 0
    warnings: list[str]


def _read_rows(frame: pd.DataFrame, spec: InteractionsConfig, source: str) -> _Rows:
    named = [spec.user, spec.item, spec.rating, spec.weight, spec.time, *spec.user_features, *spec.item_features]
    missing = [c for c in named if c is not None and c not in frame.columns]
    if missing:
        raise DataError(f"column(s) {', '.join(map(repr, missing))} not found; the table has: "
                        f"{', '.join(map(str, frame.columns[:30]))}. Fix: name an existing column in interactions",
                        source=source, column=missing[0])
    repeated = sorted({c for c in named if c is not None and (frame.columns == c).sum() > 1})
    if repeated:
        raise DataError(f"duplicate column names: the table has more than one column named "
                        f"{' or '.join(map(repr, repeated))}, so it is not clear which one to read. Fix: rename or "
                        "drop the repeated columns", source=source, column=repeated[0])
    if not len(frame):
        raise DataError("the table has no rows. Fix: point data.source at the interactions", source=source)
    frame = frame.reset_index(drop=True)  # row numbers in messages are positions in the table
    users, items = (_ids(frame[c], c, source) for c in (spec.user, spec.item))
    keep = np.ones(len(frame), dtype=bool)
    warnings: list[str] = []
    if spec.rating is not None:
        ratings = _numbers(frame[spec.rating], spec.rating, source, required=spec.min_rating is not None)
        if spec.min_rating is not None:
            keep &= ratings >= spec.min_rating
    weights = np.ones(len(frame))
    if spec.weight is not None:
        weights = _numbers(frame[spec.weight], spec.weight, source, required=True)
        negative = np.flatnonzero(weights < 0)
        if len(negative):
            shown = ", ".join(f"{weights[p]:g}" for p in negative[:_SHOWN])
            raise DataError(f"{len(negative)} weight(s) are negative ({shown}); a weight counts how much a user "
                            "interacted (plays, quantity). Fix: correct them, or drop those rows", source=source,
                            column=spec.weight, rows=[int(p) + 1 for p in negative[:_SHOWN]])
        zero = keep & (weights == 0)
        if zero.any():
            warnings.append(f"{int(zero.sum())} row(s) weighing 0 in column {spec.weight!r} were left out")
            keep &= ~zero
    times = _times(frame[spec.time], spec.time, spec.time_format, source) if spec.time else None
    return _Rows(users, items, weights, times, keep, warnings)


def as_id(value: object) -> str | None:
    """One id as :func:`as_ids` writes it (None: no id): what a request's or a caller's id is
    compared by."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer() and abs(float(value)) < 2.0**53:
        return str(int(value))
    text = str(value).strip()
    return text or None


def _ids(column: pd.Series, name: str, source: str) -> np.ndarray:
    ids = as_ids(column)
    absent = np.flatnonzero(ids.isna().to_numpy())
    if len(absent):
        raise DataError(f"{len(absent)} row(s) have no id: every interaction needs a user and an item. Fix: fill "
                        "or drop those rows", source=source, column=name, rows=[int(p) + 1 for p in absent[:_SHOWN]])
    return ids.to_numpy(dtype=object)  # Python strs: hashed by pandas as they are, no fixed-width copy


def _numbers(column: pd.Series, name: str, source: str, *, required: bool) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    present = column.notna().to_numpy()
    wrong = present & ~np.isfinite(values)
    if required:
        wrong |= ~present
    bad = np.flatnonzero(wrong)
    if len(bad):
        shown = ", ".join(repr(column.iloc[p]) for p in bad[:_SHOWN])
        raise DataError(f"{len(bad)} value(s) are missing or not finite numbers ({shown}). Fix: correct them, or "
                        "drop those rows", source=source, column=name, rows=[int(p) + 1 for p in bad[:_SHOWN]])
    return values


def _times(column: pd.Series, name: str, time_format: str | None, source: str) -> np.ndarray:
    """Seconds since 1970 (float64): numbers are Unix seconds, anything else is read as times."""
    numbers = None
    if time_format is None and not pd.api.types.is_datetime64_any_dtype(column):
        numbers = pd.to_numeric(column, errors="coerce")
    if numbers is not None and numbers.notna().sum() == column.notna().sum() and column.notna().any():
        seconds = numbers.to_numpy(dtype="float64", na_value=np.nan)
        bad = [int(p) for p in np.flatnonzero(~np.isfinite(seconds))]
    else:
        text = column if pd.api.types.is_datetime64_any_dtype(column) else column.astype("string")
        parsed = parse_times(text, time_format=time_format, share=0.0)  # 20190131 with a format: a date
        if parsed is None:
            raise DataError("the time column holds no times (Unix seconds, timestamps, dates). Fix: name the time "
                            "column in interactions.time, or set interactions.time_format", source=source,
                            column=name)
        stamps = parsed.values.to_numpy(dtype="datetime64[ns]")
        seconds = np.where(np.isnat(stamps), np.nan, stamps.astype(np.int64) / 1e9)
        bad = sorted(set(parsed.unparsed) | {int(p) for p in np.flatnonzero(np.isnat(stamps))})
    if bad:
        shown = ", ".join(repr(column.iloc[p]) for p in bad[:_SHOWN])
        raise DataError(f"{len(bad)} value(s) of the time column are missing or not times ({shown}). Fix: correct "
                        "them, or set interactions.time_format", source=source, column=name,
                        rows=[p + 1 for p in bad[:_SHOWN]])
    return seconds


def _nothing_left(spec: InteractionsConfig) -> str:
    why = f" rated at least min_rating ({spec.min_rating:g})" if spec.min_rating is not None else ""
    weighing = " with a weight above 0" if spec.weight else ""
    return (f"no interaction{why} is left{weighing}. Fix: lower interactions.min_rating, or check the rating and "
            "weight columns")


# --------------------------------------------------------------------- assembly


def _space(ids: np.ndarray, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The distinct ids of ``ids[rows]`` sorted as strings (the Interactions' code order), and
    every row's code in that space (-1: an id not in it); one hashing pass over the column."""
    codes, uniques = pd.factorize(ids)  # (rows,) codes in the order ids first appear
    chosen = np.flatnonzero(np.bincount(codes[rows], minlength=len(uniques)))
    names = np.asarray(uniques, dtype=object)[chosen]
    order = np.argsort(names, kind="stable")  # str comparison: as sorted() orders them
    remap = np.full(len(uniques), -1, dtype=np.int64)
    remap[chosen[order]] = np.arange(len(chosen))
    return [str(name) for name in names[order]], remap[codes]


def _assemble(rows: _Rows, frame: pd.DataFrame, spec: InteractionsConfig, user_space: tuple[list[str], np.ndarray],
              item_space: tuple[list[str], np.ndarray], source: str) -> tuple[Interactions, list[str]]:
    """Duplicates merged, the feature frames. A space is the ids and each table row's code
    in them (-1: not in the space; every kept row is in both)."""
    (user_ids, user_codes), (item_ids, item_codes) = user_space, item_space
    warnings = rows.warnings
    kept = np.flatnonzero(rows.keep)  # positions in the table
    users, items = user_codes[kept], item_codes[kept]
    pairs = users * len(item_ids) + items
    inverse, distinct = pd.factorize(pairs)  # (kept,) the distinct pair of each kept row; hashed, not sorted
    times = None if rows.times is None else rows.times[kept]
    if len(distinct) < len(pairs):
        if spec.duplicates == "refuse":
            _refuse(pairs, kept, rows, spec, source)
        warnings.append(f"{len(pairs) - len(distinct)} repeated (user, item) row(s) were merged into "
                        f"{int((np.bincount(inverse) > 1).sum())} interaction(s): weights summed, the latest time "
                        "kept (interactions.duplicates: sum)")
        # each pair's latest row (by time, then by position): it gives the pair its time and its place
        by_pair = np.lexsort((np.arange(len(pairs)), np.zeros(len(pairs)) if times is None else times, inverse))
        last = by_pair[np.cumsum(np.bincount(inverse)) - 1]  # (pairs,) index into kept, per distinct pair
    else:
        last = np.empty(len(pairs), dtype=np.int64)
        last[inverse] = np.arange(len(pairs))
    order = np.argsort(last, kind="stable")  # the pairs in the order of their latest rows
    slot = np.empty(len(order), dtype=np.int64)
    slot[order] = np.arange(len(order))  # distinct pair → its position in the result
    weights = np.bincount(slot[inverse], weights=rows.weights[kept], minlength=len(order)).astype(np.float32)
    user_features = _features(frame, user_codes, user_ids, spec.user_features, "user", source, warnings)
    item_features = _features(frame, item_codes, item_ids, spec.item_features, "item", source, warnings)
    chosen = last[order]  # index into kept of each result row
    data = Interactions(user_ids=user_ids, item_ids=item_ids, users=users[chosen], items=items[chosen],
                        weights=weights, times=None if times is None else times[chosen],
                        user_features=user_features, item_features=item_features)
    return data, warnings


def _codes(ids: np.ndarray, space: list[str]) -> np.ndarray:
    """Positions of ``ids`` in ``space`` (int64; -1 for an id not in it)."""
    lookup = pd.Index(space, dtype=object)
    return np.asarray(lookup.get_indexer(ids), dtype=np.int64)


def _refuse(pairs: np.ndarray, kept: np.ndarray, rows: _Rows, spec: InteractionsConfig, source: str) -> None:
    repeated = pd.Series(pairs).duplicated(keep=False).to_numpy()
    at = kept[repeated]
    first = int(at[0])
    raise DataError(f"{int(repeated.sum())} rows repeat a (user, item) pair (user {str(rows.users[first])!r}, item "
                    f"{str(rows.items[first])!r}, …). Fix: one row per user and item, or set interactions.duplicates: "
                    "sum (weights summed, the latest time kept)", source=source, column=spec.item,
                    rows=[int(p) + 1 for p in at[:10]])


def _features(frame: pd.DataFrame, codes: np.ndarray, space: list[str], columns: list[str], kind: str, source: str,
              warnings: list[str]) -> pd.DataFrame | None:
    """One row per code of ``space``: each column's first present value for that user or item,
    from every row of theirs (``codes``: each table row's code, -1 for a row of no one in it)."""
    if not columns:
        return None
    rows = codes >= 0
    table = frame.reset_index(drop=True).loc[rows, columns]
    for column in columns:
        table[column] = _cells(table[column], source)
    grouped = table.groupby(codes[rows], sort=True)
    varying = grouped.nunique(dropna=True) > 1
    article = "an" if kind == "item" else "a"  # "a user", "an item"
    for column in columns:
        if varying[column].any():
            shown = ", ".join(repr(space[c]) for c in varying.index[varying[column]][:_SHOWN])
            warnings.append(f"column {column!r} varies within {int(varying[column].sum())} {kind}(s) ({shown}); "
                            f"{article} {kind} feature is constant per {kind}: the first value was kept")
    return grouped.first().reindex(range(len(space))).reset_index(drop=True)


def _cells(column: pd.Series, source: str) -> pd.Series:
    """A feature column with list-valued cells (a Parquet list column) as ``|``-joined text, the
    form several values of one feature take (``Action|Comedy``); an empty list is missing."""
    if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) not in ("mixed", "mixed-integer"):
        return column
    listed = column.map(lambda v: isinstance(v, list | tuple | set | frozenset | np.ndarray)).to_numpy(dtype=bool)
    if listed.any():
        column = column.where(~listed, column[listed].map(_joined))
    odd = np.flatnonzero(~column.map(lambda v: isinstance(v, Hashable)).to_numpy(dtype=bool))  # a dict, say
    if len(odd):
        raise DataError(f"{len(odd)} value(s) are neither a value nor a list of values (a "
                        f"{type(column.iloc[odd[0]]).__name__}). Fix: write the feature as text or numbers",
                        source=source, column=str(column.name),
                        rows=[int(p) + 1 for p in column.index[odd[:_SHOWN]]])  # index: table positions
    return column


def _joined(values: Iterable[object]) -> str | None:
    """A list of values as ``a|b`` (a set's in sorted order); None for an empty list."""
    items = sorted(values, key=str) if isinstance(values, set | frozenset) else values
    return "|".join(str(v) for v in items) or None
