"""The rows of a retraining: the labelled records of the prediction log (the newest held
back to judge on, the others learned from), the original data without its test split, and
the original test split itself (found again by the champion's split record)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelmill.config import PipelineConfig
from modelmill.config.monitoring import RetrainConfig
from modelmill.data.split import SplitRecord, row_hashes, split_rest
from modelmill.errors import ServingError
from modelmill.monitoring.export import log_frame
from modelmill.monitoring.store import LogStore, display_url
from modelmill.predictor import Predictor


@dataclass
class Labelled:
    """The labelled records of the log as the features read them, oldest first: ``learn``
    joins the training data, ``held_back`` (the newest) judges challenger and champion."""

    learn: pd.DataFrame
    held_back: pd.DataFrame
    total: int
    earlier: list[dict[str, str]]  # what the champion (and its ancestors) learned

    def learned(self) -> list[dict[str, str]]:
        """What a challenger made of these learned, for its lineage (the next retraining must
        not judge it on them): the champion's cutoffs, and these records' — labelled up to the
        newest label read, logged before the first record held back."""
        labelled = pd.concat([self.learn["labelled_at"], self.held_back["labelled_at"]]).max()
        return [*self.earlier, {"labelled_until": pd.Timestamp(labelled).isoformat(),
                                "logged_before": pd.Timestamp(self.held_back["logged_at"].iloc[0]).isoformat()}]


def labelled_records(store: LogStore, champion: Predictor, settings: RetrainConfig, *,
                     since: float | None = None, learned: Any = None) -> Labelled:
    """The log's labelled records, split into what is learned from and what is held back:
    the newest of those the champion did not learn from (``learned``: what a retrained
    champion's lineage says it learned; a record judged on must be new to both models).

    Raises:
        ServingError: no labelled record, or too few to hold back ``min_holdout`` and learn
            from as many.
    """
    frame = log_frame(store, since=since, labelled_only=True)
    target = champion.target.name
    if len(frame):
        frame = frame.loc[champion.target.labelled(frame[target])].reset_index(drop=True)
    where = display_url(store.url)
    if not len(frame):
        raise ServingError(f"the prediction log at {where} holds no labelled records{' since then' if since else ''}: "
                           "there is nothing new to learn from or to judge a challenger on. Fix: send labels "
                           "(POST /v1/feedback, or modelmill log labels FILE --log URL), then retrain")
    needed = 2 * settings.min_holdout
    if len(frame) < needed:
        raise ServingError(f"the prediction log at {where} holds {len(frame)} labelled records; retraining needs "
                           f"{needed} (monitoring.retrain.min_holdout {settings.min_holdout} held back to judge on, as "
                           "many to learn from). Fix: wait for more labels, or lower min_holdout")
    earlier = [c for c in (learned if isinstance(learned, list) else []) if isinstance(c, dict)]
    new = np.ones(len(frame), dtype=bool)
    for cutoff in earlier:  # records the champion, or an ancestor, learned from: not new to it
        new &= ~((frame["labelled_at"] <= pd.Timestamp(cutoff["labelled_until"])) &
                 (frame["logged_at"] < pd.Timestamp(cutoff["logged_before"]))).to_numpy()
    held = max(settings.min_holdout, math.ceil(settings.holdout * len(frame)))
    candidates = np.flatnonzero(new)
    if candidates.size < settings.min_holdout:
        raise ServingError(f"of the {len(frame)} labelled records of the log, {candidates.size} are new to the champion "
                           f"(it learned from the others); judging a challenger needs {settings.min_holdout} "
                           "(monitoring.retrain.min_holdout). Fix: wait for more labels")
    held_back = np.zeros(len(frame), dtype=bool)
    held_back[candidates[-held:]] = True
    for feature in champion.features:
        frame[feature.name] = feature.from_log(frame[feature.name]) if feature.name in frame else None
    return Labelled(frame.loc[~held_back].reset_index(drop=True), frame.loc[held_back].reset_index(drop=True),
                    len(frame), earlier)


def check_learnable(champion: Predictor, records: pd.DataFrame) -> None:
    """Columns whose logged values cannot be learned from (personal data kept as a keyed
    hash, images kept as a hash) are an error: a model must never learn hashes."""
    for feature in champion.features:
        if getattr(feature.config, "pii", False):
            raise ServingError(f"column {feature.name!r} is personal data: the prediction log keeps only a keyed hash "
                               "of it, which a model cannot learn from. Fix: drop it from the config's features, "
                               "or retrain from the original data (modelmill train)")
        reason = feature.not_comparable(records[feature.name]) if feature.name in records else None
        if reason:
            raise ServingError(f"column {feature.name!r} cannot be learned from the prediction log: {reason}. "
                               "Fix: log it in full (serving.log.images: bytes), or retrain from the original data")


@dataclass
class TrainingRows:
    """What the challenger is fitted on (``train``: the original rows but the test split, and
    the log's records; ``valid``: its validation rows when chosen here, else None: the
    pipeline splits ``train``) and judged on (``test``: the original test split)."""

    train: pd.DataFrame
    valid: pd.DataFrame | None
    test: pd.DataFrame
    original: int
    added: int
    test_copies: int  # logged records equal to an original test row: left out


def training_rows(original: pd.DataFrame, test_source: pd.DataFrame | None, record: SplitRecord,
                  config: PipelineConfig, learn: pd.DataFrame) -> TrainingRows:
    """The original rows without the test split, then the log's records; neither with a copy
    of a test row, which would leak the test split into training.

    ``test_source``: the frame the test rows are in, when not ``original`` (split method
    ``files``). With a time split, validation is the newest share of each: the log's records
    are the newest of all, and a challenger must learn from them, not only stop on them."""
    columns = [f.name for f in config.features] + [config.target.name]
    split = config.data.split
    if test_source is None:
        positions = record.test_positions(original)
        test = original.iloc[positions].reset_index(drop=True)
        rest = original.drop(index=original.index[positions])
    else:
        test = record.test_split(test_source)
        rest = original
    test_hashes = row_hashes(_canonical(test, test, columns), columns)
    rest = rest.loc[~np.isin(row_hashes(_canonical(rest, test, columns), columns), test_hashes)]
    added = learn[columns].copy()
    added[config.target.name] = _as_original(added[config.target.name], original[config.target.name])
    copies = np.isin(row_hashes(_canonical(added, test, columns), columns), test_hashes)
    added, learned_at = added.loc[~copies], learn.loc[~copies]
    if split.column and split.column in rest.columns and split.column not in added.columns:
        # the split's own column, for the log's records: a split column marks them for training,
        # a group split makes each a group of its own
        added[split.column] = {"column": "train", "group": learned_at["request_id"]}.get(split.method)
    keep = [c for c in rest.columns if c in columns or c == split.column]
    rest, added = rest[keep], added[[c for c in keep if c in added.columns]]
    valid = None
    if split.method == "time" and split.valid > 0:
        rest_train, rest_valid = split_rest(rest, split, target=config.target.name, classify=True)
        newest = round(len(added) * split.valid)  # the records are in logging order
        added_train, added_valid = added.iloc[:len(added) - newest], added.iloc[len(added) - newest:]
        train = pd.concat([rest_train, added_train], ignore_index=True)
        valid = pd.concat([rest_valid, added_valid], ignore_index=True)
    else:
        train = pd.concat([rest, added], ignore_index=True)
    # the original rows were treated by the privacy policy on reading (their mark), the log's
    # records on arrival by the champion's (the same: check_config): none is treated again
    for part in (train, valid, test):
        if part is not None:
            part.attrs.update(original.attrs)
    return TrainingRows(train, valid, test, len(rest), len(added), int(copies.sum()))


def _canonical(frame: pd.DataFrame, like: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame``'s values in one spelling for comparing rows with ``like``'s: numbers as
    floats where ``like`` has numbers (a logged 39.0 is the data's 39), else text."""
    return pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce").astype("float64")
                         if pd.api.types.is_numeric_dtype(like[c]) else frame[c].astype("string")
                         for c in columns}, index=frame.index)


def _as_original(labels: pd.Series, original: pd.Series) -> pd.Series:
    """Labels as the log keeps them (class names as text, numbers as floats) in the values of
    the original column (1, not "1"), so that one class never becomes two."""
    if pd.api.types.is_numeric_dtype(original) and not pd.api.types.is_bool_dtype(original):
        return pd.to_numeric(labels, errors="coerce")
    values: dict[str, Any] = {}
    for value in original.dropna().unique():
        values.setdefault(str(value).lower() if isinstance(value, (bool, np.bool_)) else str(value), value)
    return labels.map(lambda label: values.get(str(label), label))

