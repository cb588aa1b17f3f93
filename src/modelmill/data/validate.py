"""Checks of the data against the config, before anything is fitted or written."""

from __future__ import annotations

import pandas as pd

from modelmill.config.schema import PipelineConfig
from modelmill.data.clean import feature_missing
from modelmill.errors import DataError, did_you_mean
from modelmill.data.values import as_numbers, as_strings, parse_dates


def check_columns(frame: pd.DataFrame, wanted: list[str], *, source: str) -> None:
    """Every wanted column is present; otherwise one error listing all that are missing."""
    available = [str(c) for c in frame.columns]
    missing = [c for c in wanted if c not in frame.columns]
    if not missing:
        return
    hints = "; ".join(f"{c!r}{did_you_mean(c, available)}" for c in missing)
    raise DataError(
        f"missing column(s): {hints}. The data has: {', '.join(available)}. "
        "Fix: correct the names in the config, or the data",
        source=source,
    )


def validate_frame(frame: pd.DataFrame, config: PipelineConfig, *, source: str) -> list[str]:
    """Raise a DataError for data the config cannot use; return warnings (e.g. leakage)."""
    if frame.empty:
        raise DataError("0 rows: there is nothing to train on", source=source)
    check_columns(frame, [f.name for f in config.features] + [config.target.name], source=source)
    for feature in config.features:
        column = frame[feature.name]
        if feature_missing(column, feature.type).all():
            raise DataError("is empty (every value is missing). Fix: drop it from `features`",
                            source=source, column=feature.name)
        if feature.type == "number":
            as_numbers(column, feature=feature.name)
        elif feature.type == "date":
            parse_dates(column, feature.format, feature=feature.name)
    return leakage_warnings(frame, config)


def leakage_warnings(frame: pd.DataFrame, config: PipelineConfig) -> list[str]:
    """Warn about a feature that determines the target one-to-one (a copy or recoding of it)."""
    target = as_strings(frame[config.target.name])
    classes = target.nunique()
    warnings = []
    for feature in config.features:
        if feature.type == "image":
            continue  # pixels cannot be a recoding of the target
        if frame[feature.name].nunique() != classes:  # cheap pre-check: a recoding has as many values
            continue
        values = as_strings(frame[feature.name])
        pairs = pd.DataFrame({"f": values, "t": target}).dropna()
        if pairs.empty or pairs["f"].nunique() != pairs["t"].nunique():
            continue
        if pairs.groupby("f")["t"].nunique().max() == 1:
            warnings.append(
                f"feature {feature.name!r} determines the target {config.target.name!r} exactly "
                "(it looks like a copy of the target: target leakage). Fix: drop it from `features`"
            )
    return warnings
