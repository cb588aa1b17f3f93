"""Cleaning: duplicate rows, rows without a target, rows with an unreadable cell, rows whose
feature asks for `drop` on missing values (before the split); outlier rows dropped from the
training split only. Every action is counted in a report that is saved with the run. What
counts as missing, unreadable or an outlier in a column is the feature's answer
(:class:`ColumnRules`), asked by the caller and passed down."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from modelmill.config.schema import OutlierConfig, PipelineConfig
from modelmill.data.image_values import hashable_frame
from modelmill.data.values import as_numbers, as_strings


@dataclass
class CleaningReport:
    rows_in: int = 0
    rows_out: int = 0
    duplicates_dropped: int = 0
    target_missing_dropped: int = 0
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)

    def column(self, name: str) -> dict[str, Any]:
        return self.columns.setdefault(name, {})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def outlier_bounds(values: np.ndarray, outliers: OutlierConfig) -> tuple[float, float] | None:
    """Bounds outside which a value is an outlier, from the present values; None if off."""
    present = values[~np.isnan(values)]
    if outliers.method == "none" or present.size == 0:
        return None
    if outliers.method == "iqr":
        k = outliers.threshold if outliers.threshold is not None else 1.5
        q1, q3 = np.quantile(present, [0.25, 0.75])
        return float(q1 - k * (q3 - q1)), float(q3 + k * (q3 - q1))
    z = outliers.threshold if outliers.threshold is not None else 3.0
    mean, std = float(present.mean()), float(present.std())
    return mean - z * std, mean + z * std


def missing_mask(column: pd.Series) -> np.ndarray:
    """True where a value is missing (NaN/None or a missing marker such as "?" or "")."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        return column.isna().to_numpy()
    return as_strings(column).isna().to_numpy()


def duplicated_rows(frame: pd.DataFrame) -> np.ndarray:
    """Exact duplicate mask (later copies True). Rows are first compared by a 64-bit hash,
    which is several times faster than pandas' column-wise comparison; only rows whose
    hash repeats are then compared exactly, so a hash collision can never drop a row."""
    hashes = pd.util.hash_pandas_object(frame, index=False)
    candidates = hashes.duplicated(keep=False).to_numpy()
    mask = np.zeros(len(frame), dtype=bool)
    if candidates.any():
        subset = frame.loc[candidates]
        mask[np.flatnonzero(candidates)] = subset.duplicated().to_numpy()
    return mask


class ColumnRules(Protocol):
    """What cleaning asks of each feature about its column (the feature answers, so this
    layer never needs to know feature types)."""

    @property
    def name(self) -> str: ...

    @property
    def missing_strategy(self) -> str: ...

    @property
    def cell_noun(self) -> str:
        """What one cell holds ("image"), for the report's entries on unreadable cells."""
        ...

    def missing(self, column: pd.Series) -> np.ndarray:
        """True where a cell counts as missing."""
        ...

    def unreadable(self, column: pd.Series) -> dict[int, str]:
        """Positions of cells that cannot be used at all, with the reason (raises a
        DataError when there are too many)."""
        ...

    def outliers(self, column: pd.Series, config: OutlierConfig) -> np.ndarray | None:
        """True where a value lies outside the bounds fitted on this column (None: the
        column has no notion of outliers)."""
        ...


def drop_unreadable(frame: pd.DataFrame, columns: Sequence[ColumnRules], report: CleaningReport) -> pd.DataFrame:
    """Rows with a cell that cannot be read (a broken image, say) are dropped and listed
    with the reason in the report."""
    for rules in columns:
        bad = rules.unreadable(frame[rules.name])
        if not bad:
            continue
        positions = sorted(bad)
        entry = report.column(rules.name)
        entry[f"bad_{rules.cell_noun}s"] = len(bad)
        entry[f"bad_{rules.cell_noun}_examples"] = [{"row": int(frame.index[p]), "reason": bad[p]}
                                                    for p in positions[:50]]
        keep = np.ones(len(frame), dtype=bool)
        keep[positions] = False
        frame = frame.loc[keep]
    return frame


def clean_rows(frame: pd.DataFrame, config: PipelineConfig,
               columns: Sequence[ColumnRules]) -> tuple[pd.DataFrame, CleaningReport]:
    """Row-level cleaning that needs no fitted state; safe to run before the split.
    ``columns``: the (unfitted) features, which say what is missing or unreadable."""
    report = CleaningReport(rows_in=len(frame))
    names = [f.name for f in config.features] + [config.target.name]
    if config.cleaning.duplicates == "drop":
        duplicated = duplicated_rows(hashable_frame(frame[names]))
        report.duplicates_dropped = int(duplicated.sum())
        frame = frame.loc[~duplicated]
    target = frame[config.target.name]
    # a number target is read as its feature reads numbers: ±inf is no target value either
    no_target = np.isnan(as_numbers(target, feature=config.target.name)) if config.target.type == "number" \
        else missing_mask(target)
    report.target_missing_dropped = int(no_target.sum())
    frame = frame.loc[~no_target]
    frame = drop_unreadable(frame, columns, report)
    for rules in columns:
        missing = rules.missing(frame[rules.name])
        entry = report.column(rules.name)
        entry["missing"] = int(missing.sum())
        entry["strategy"] = rules.missing_strategy
        if rules.missing_strategy == "drop" and missing.any():
            entry["rows_dropped"] = int(missing.sum())
            frame = frame.loc[~missing]
    report.rows_out = len(frame)
    return frame.reset_index(drop=True), report


def drop_outlier_rows(train: pd.DataFrame, config: PipelineConfig, columns: Sequence[ColumnRules],
                      report: CleaningReport) -> pd.DataFrame:
    """With ``outliers.action: drop``, drop training rows outside the bounds fitted on the
    training split. Validation and test rows are never dropped, so metrics stay honest."""
    outliers = config.cleaning.outliers
    if outliers.method == "none" or outliers.action != "drop":
        return train
    keep = np.ones(len(train), dtype=bool)
    for rules in columns:
        outside = rules.outliers(train[rules.name], outliers)
        if outside is None:
            continue
        report.column(rules.name)["outlier_rows_dropped"] = int(outside.sum())
        keep &= ~outside
    return train.loc[keep].reset_index(drop=True)
