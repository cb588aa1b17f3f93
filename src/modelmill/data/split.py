"""Splitting rows into train, validation and test: random, stratified, time-ordered,
group-wise, or by a column; always seeded."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelmill.config.schema import SplitConfig
from modelmill.data.image_values import hashable_frame
from modelmill.data.times import read_dates
from modelmill.errors import DataError

Splits = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
_SPLIT_NAMES = {"train": "train", "training": "train", "valid": "valid", "validation": "valid",
                "val": "valid", "dev": "valid", "test": "test", "testing": "test"}


def split_frame(frame: pd.DataFrame, config: SplitConfig, *, target: str, classify: bool) -> Splits:
    """(train, valid, test); for method ``files`` the frame is train + valid only, and the
    test part comes back empty (the caller reads ``test_source``)."""
    if config.method == "column":
        return _by_column(frame, config)
    holdout = 0.0 if config.method == "files" else config.test
    rest, test = _two_way(frame, holdout, config, target=target, classify=classify)
    if config.method == "files" and config.valid_source:
        return rest.reset_index(drop=True), frame.iloc[:0], test
    train, valid = _two_way(rest, config.valid, config, target=target, classify=classify)
    return train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True)


def split_rest(frame: pd.DataFrame, config: SplitConfig, *, target: str, classify: bool
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid) of rows whose test split is made elsewhere (retraining keeps the
    original one): by the config's method at its validation share; a split column's
    ``train``/``valid`` marks are kept (its other rows train); with ``valid_source`` the
    frame is all training rows."""
    if config.method == "column":
        names = frame[str(config.column)].astype("string").str.strip().str.lower().map(_SPLIT_NAMES)
        valid = (names == "valid").to_numpy()
        rest = frame.drop(columns=[str(config.column)])
        return rest.loc[~valid].reset_index(drop=True), rest.loc[valid].reset_index(drop=True)
    if config.method == "files" and config.valid_source:
        return frame.reset_index(drop=True), frame.iloc[:0]
    train, valid = _two_way(frame, config.valid, config, target=target, classify=classify)
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def _two_way(frame: pd.DataFrame, fraction: float, config: SplitConfig, *, target: str,
             classify: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    if fraction <= 0:
        return frame, frame.iloc[:0]
    if len(frame) < 3:
        raise DataError(f"only {len(frame)} rows are left to split; at least 3 are needed")
    if config.method == "time":
        # the forms init recognises (2019 Q3, 2019 W07 …) order too; a value that is no time is an error
        order = read_dates(frame[str(config.column)], None, feature=str(config.column)).argsort(kind="stable")
        ordered = frame.iloc[np.asarray(order)]
        cut = len(frame) - max(1, round(len(frame) * fraction))
        return ordered.iloc[:cut], ordered.iloc[cut:]
    from sklearn.model_selection import GroupShuffleSplit, train_test_split  # ~1 s to import: only when splitting

    if config.method == "group":
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=config.seed)
        keep, hold = next(splitter.split(frame, groups=frame[str(config.column)].astype("string").fillna("")))
        return frame.iloc[keep], frame.iloc[hold]
    stratify = None
    if config.method == "stratified" and classify:
        labels = frame[target].astype("string")
        # Stratifying needs two rows per class in each part; fall back to random otherwise.
        if labels.value_counts().min() >= 2:
            stratify = labels
    keep_part, hold_part = train_test_split(frame, test_size=fraction, random_state=config.seed,
                                            stratify=stratify)
    return keep_part, hold_part


def _by_column(frame: pd.DataFrame, config: SplitConfig) -> Splits:
    column = str(config.column)
    names = frame[column].astype("string").str.strip().str.lower().map(_SPLIT_NAMES)
    unknown = names.isna()
    if unknown.any():
        values = sorted(set(frame.loc[unknown, column].astype("string").fillna("<missing>")))[:5]
        raise DataError(
            f"split column holds values other than train/valid/test: {values}",
            column=column, rows=np.flatnonzero(unknown.to_numpy()).tolist(),
        )
    parts = [frame.loc[names == part].drop(columns=[column]).reset_index(drop=True)
             for part in ("train", "valid", "test")]
    if parts[0].empty or parts[2].empty:
        raise DataError("the split column must mark at least one train and one test row", column=column)
    return parts[0], parts[1], parts[2]


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in ``columns`` (pandas' own row hash; images as
    their bytes)."""
    return pd.util.hash_pandas_object(hashable_frame(frame[columns]), index=False).to_numpy()


@dataclass(frozen=True)
class SplitRecord:
    """How a bundle's test split was made, so that a later stage (compression, monitoring,
    retraining) can rebuild "the original test split" from the data, or say clearly that
    the data changed.

    Attributes:
        source: where the test rows were read from (``data.source``, or ``test_source``).
        settings: the ``data.split`` section that made the split.
        columns: the columns whose values identify a row (the features and the target).
        rows: how many rows each part had (train, valid, test).
        test_rows: a hash of each test row's values, in the order of the test split.
    """

    source: str
    settings: dict[str, Any]
    columns: list[str]
    rows: dict[str, int]
    test_rows: list[str]

    @classmethod
    def of(cls, test: pd.DataFrame, *, source: str, settings: SplitConfig, columns: list[str],
           rows: dict[str, int]) -> SplitRecord:
        hashes = [f"{int(h):016x}" for h in row_hashes(test, columns)]
        return cls(source, settings.model_dump(mode="json"), list(columns), dict(rows), hashes)

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "settings": self.settings, "columns": self.columns, "rows": self.rows,
                "test_rows": self.test_rows}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitRecord:
        return cls(str(data["source"]), dict(data["settings"]), list(data["columns"]), dict(data["rows"]),
                   list(data["test_rows"]))

    def test_split(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` (the data read again) that made up the test split, in their
        recorded order.

        Raises:
            DataError: the frame lacks a column, or some test rows are not in it any more.
        """
        return frame.iloc[self.test_positions(frame)].reset_index(drop=True)

    def test_positions(self, frame: pd.DataFrame) -> list[int]:
        """Where in ``frame`` the test rows are, in their recorded order (the errors of
        :meth:`test_split`)."""
        missing_columns = [c for c in self.columns if c not in frame.columns]
        if missing_columns:
            raise DataError(f"the data has no column(s) {missing_columns} that the test split was made of; "
                            "it is not the data the bundle was trained on", source=self.source)
        positions: dict[str, list[int]] = defaultdict(list)
        for position, value in enumerate(row_hashes(frame, self.columns)):
            positions[f"{int(value):016x}"].append(position)
        chosen, lost = [], 0
        for digest in self.test_rows:
            found = positions.get(digest)
            if found:
                chosen.append(found.pop(0))
            else:
                lost += 1
        if lost:
            raise DataError(f"the data changed since the bundle was trained: {lost} of {len(self.test_rows)} "
                            "test rows are not in it (or their values changed). Fix: evaluate on the original "
                            "data, or on a new labelled test set", source=self.source)
        return chosen
