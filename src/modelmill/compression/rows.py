"""The labelled rows a compression is judged and tuned on: the bundle's original test split
(found again by the split record's row hashes) or a file the user gives; and the original
training rows (the data without its test split), for calibration and fine-tuning.

The bundle's config names its data as it was written; a relative path is read from the
current folder (the one the model was trained from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from modelmill.api import Pipeline
from modelmill.bundle import Bundle
from modelmill.data.split import SplitRecord
from modelmill.errors import DataError, ModelmillError


@dataclass(frozen=True)
class Rows:
    frame: pd.DataFrame
    described: str  # for messages and the lineage: which rows these are


def gate_rows(bundle: Bundle, data: str | None, base_dir: Path | None = None) -> Rows:
    """The rows the accuracy gate scores before and after: ``data`` (labelled rows), else
    the bundle's original test split (its relative sources read from ``base_dir``, by
    default the current folder)."""
    pipeline = Pipeline(bundle.config(), base_dir=base_dir or Path.cwd())
    if data is not None:
        return Rows(_labelled(pipeline, pipeline.read(data), data), f"{data}")
    record = _record(bundle)
    split = bundle.config().data.split
    try:
        source = pipeline.read_source(str(split.test_source)) if split.method == "files" else pipeline.read()
    except ModelmillError as exc:
        raise _unreadable(exc, record.source, "--data FILE (labelled rows to judge on)") from None
    test = record.test_split(source)
    return Rows(_labelled(pipeline, test, record.source), f"the original test split ({len(test):,} rows of "
                f"{record.source})")


def training_rows(bundle: Bundle, train: str | None, base_dir: Path | None = None) -> Rows:
    """Rows to calibrate or fine-tune on: ``train``, else the original data without its test
    split (a model is never tuned on the rows it is judged on)."""
    pipeline = Pipeline(bundle.config(), base_dir=base_dir or Path.cwd())
    if train is not None:
        return Rows(_labelled(pipeline, pipeline.read(train), train), f"{train}")
    config = bundle.config()
    try:
        original = pipeline.read()
    except ModelmillError as exc:
        raise _unreadable(exc, config.data.source, "--train FILE (labelled rows to calibrate or fine-tune on)") \
            from None
    if config.data.split.method != "files":
        positions = _record(bundle).test_positions(original)
        original = original.drop(index=original.index[positions]).reset_index(drop=True)
    return Rows(_labelled(pipeline, original, config.data.source),
                f"the original data without its test split ({len(original):,} rows of {config.data.source})")


def _record(bundle: Bundle) -> SplitRecord:
    split = bundle.split()
    if split is None:
        raise DataError(f"bundle {bundle.path} has no record of its test split (it was trained before bundles "
                        "kept one, or in shards: data.shards records none). Fix: pass --data FILE, labelled rows "
                        "to judge the compressed model on")
    return SplitRecord.from_json(split)


def _labelled(pipeline: Pipeline, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    target = pipeline.config.target.name
    if target not in frame.columns:
        raise DataError(f"has no column {target!r} (the target): the rows must be labelled", source=source)
    known = frame[target].notna()
    if not known.any():
        raise DataError(f"no row has a value of the target {target!r}", source=source)
    return frame.loc[known].reset_index(drop=True)


def _unreadable(exc: ModelmillError, source: str, fix: str) -> DataError:
    return DataError(f"the bundle's data {source!r} could not be read from here ({' '.join(str(exc).split())}). "
                     f"A relative path is read from the current folder: run from the folder the model was "
                     f"trained from, or pass {fix}")
