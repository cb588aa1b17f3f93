"""Checks of the data against the config, before anything is fitted or written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from modelmill.config.schema import PipelineConfig
from modelmill.errors import DataError, did_you_mean
from modelmill.data.values import as_strings


class ColumnChecks(Protocol):
    """What validation asks of each feature about its column (the feature answers)."""

    @property
    def name(self) -> str: ...

    @property
    def may_encode_target(self) -> bool:
        """Whether the column can be a recoding of the target (pixels cannot)."""
        ...

    def missing(self, column: pd.Series) -> np.ndarray: ...

    def validate(self, column: pd.Series) -> None:
        """Raise a DataError for values the feature cannot read (words in a number column)."""
        ...


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


def validate_frame(frame: pd.DataFrame, config: PipelineConfig, columns: Sequence[ColumnChecks], *,
                   source: str) -> list[str]:
    """Raise a DataError for data the config cannot use; return warnings (e.g. leakage).
    ``columns``: the (unfitted) features, which check their own columns."""
    if frame.empty:
        raise DataError("0 rows: there is nothing to train on", source=source)
    check_columns(frame, [f.name for f in config.features] + [config.target.name], source=source)
    for checks in columns:
        column = frame[checks.name]
        if checks.missing(column).all():
            raise DataError("is empty (every value is missing). Fix: drop it from `features`",
                            source=source, column=checks.name)
        checks.validate(column)
    return leakage_warnings(frame, config.target.name, columns)


def leakage_warnings(frame: pd.DataFrame, target_name: str, columns: Sequence[ColumnChecks]) -> list[str]:
    """Warn about a feature that determines the target one-to-one (a copy or recoding of it)."""
    target = as_strings(frame[target_name])
    classes = target.nunique()
    warnings = []
    for checks in columns:
        if not checks.may_encode_target:
            continue
        if frame[checks.name].nunique() != classes:  # cheap pre-check: a recoding has as many values
            continue
        values = as_strings(frame[checks.name])
        pairs = pd.DataFrame({"f": values, "t": target}).dropna()
        if pairs.empty or pairs["f"].nunique() != pairs["t"].nunique():
            continue
        if pairs.groupby("f")["t"].nunique().max() == 1:
            warnings.append(
                f"feature {checks.name!r} determines the target {target_name!r} exactly "
                "(it looks like a copy of the target: target leakage). Fix: drop it from `features`"
            )
    return warnings
