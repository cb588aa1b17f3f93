"""Cleaning: duplicate rows, rows without a target, rows whose feature asks for `drop` on
missing values (before the split); outlier rows dropped from the training split only.
Every action is counted in a report that is saved with the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelmill.config.schema import ImageFeatureConfig, OutlierConfig, PipelineConfig
from modelmill.data.image_values import find_bad, hashable_frame, is_missing
from modelmill.data.values import as_numbers, as_strings
from modelmill.errors import DataError


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


def feature_missing(column: pd.Series, feature_type: str) -> np.ndarray:
    """Missing cells of a feature's column (image cells have their own notion of empty)."""
    if feature_type == "image":
        return np.fromiter((is_missing(cell) for cell in column), dtype=bool, count=len(column))
    if feature_type == "text":  # "", "NA" or "-" may be what someone wrote; bytes are text too
        return column.isna().to_numpy()
    return missing_mask(column)


def drop_bad_images(frame: pd.DataFrame, config: PipelineConfig, report: CleaningReport) -> pd.DataFrame:
    """Rows whose image cannot be read are dropped and listed with the reason; too many
    fail the run (``max_bad_fraction``), since that usually means a wrong folder or format."""
    for feature in config.features:
        if not isinstance(feature, ImageFeatureConfig):
            continue
        bad = find_bad(frame[feature.name], max_pixels=feature.max_pixels)
        if not bad:
            continue
        positions = sorted(bad)
        entry = report.column(feature.name)
        entry["bad_images"] = len(bad)
        entry["bad_image_examples"] = [{"row": int(frame.index[p]), "reason": bad[p]} for p in positions[:50]]
        if len(bad) > feature.max_bad_fraction * len(frame):
            shown = "; ".join(f"row {frame.index[p]}: {bad[p]}" for p in positions[:3])
            raise DataError(f"{len(bad)} of {len(frame)} images cannot be read, more than max_bad_fraction "
                            f"{feature.max_bad_fraction} ({shown}). Fix: check the source, or raise "
                            "max_bad_fraction to skip them", column=feature.name)
        keep = np.ones(len(frame), dtype=bool)
        keep[positions] = False
        frame = frame.loc[keep]
    return frame


def clean_rows(frame: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, CleaningReport]:
    """Row-level cleaning that needs no fitted state; safe to run before the split."""
    report = CleaningReport(rows_in=len(frame))
    columns = [f.name for f in config.features] + [config.target.name]
    if config.cleaning.duplicates == "drop":
        duplicated = duplicated_rows(hashable_frame(frame[columns]))
        report.duplicates_dropped = int(duplicated.sum())
        frame = frame.loc[~duplicated]
    no_target = missing_mask(frame[config.target.name])
    report.target_missing_dropped = int(no_target.sum())
    frame = frame.loc[~no_target]
    frame = drop_bad_images(frame, config, report)
    for feature in config.features:
        missing = feature_missing(frame[feature.name], feature.type)
        entry = report.column(feature.name)
        entry["missing"] = int(missing.sum())
        entry["strategy"] = feature.missing.strategy
        if feature.missing.strategy == "drop" and missing.any():
            entry["rows_dropped"] = int(missing.sum())
            frame = frame.loc[~missing]
    report.rows_out = len(frame)
    return frame.reset_index(drop=True), report


def drop_outlier_rows(train: pd.DataFrame, config: PipelineConfig, report: CleaningReport) -> pd.DataFrame:
    """With ``outliers.action: drop``, drop training rows outside the bounds fitted on the
    training split. Validation and test rows are never dropped, so metrics stay honest."""
    outliers = config.cleaning.outliers
    if outliers.method == "none" or outliers.action != "drop":
        return train
    keep = np.ones(len(train), dtype=bool)
    for feature in config.features:
        if feature.type != "number":
            continue
        values = as_numbers(train[feature.name], feature=feature.name)
        bounds = outlier_bounds(values, outliers)
        if bounds is None:
            continue
        outside = (values < bounds[0]) | (values > bounds[1])
        report.column(feature.name)["outlier_rows_dropped"] = int(outside.sum())
        keep &= ~outside
    return train.loc[keep].reset_index(drop=True)


def count_clipped(train: pd.DataFrame, name: str, bounds: list[float] | None, report: CleaningReport) -> None:
    """Record how many training values of a number feature its fitted bounds clip."""
    if not bounds:
        return
    values = as_numbers(train[name], feature=name)
    report.column(name)["outliers_clipped"] = int(((values < bounds[0]) | (values > bounds[1])).sum())
    report.column(name)["clip_bounds"] = [float(b) for b in bounds]
