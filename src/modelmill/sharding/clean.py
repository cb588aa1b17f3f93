"""Cleaning shards: exact duplicates removed by hash partitioning (``sharding.dedup``), then
every batch cleaned by the single-machine rules themselves (``data.clean.clean_rows``: rows
without a target, with an unreadable cell, or missing a value whose feature asks for
``drop``), which look at one row at a time. The per-batch reports are summed into one, the
report the single-machine cleaning gives for the same table.

Every batch is also checked by each feature's own value check (``validate``: a word in a
number column, a date that does not parse), as the single-machine pipeline checks the whole
frame: a bad value anywhere in the table is named with its row, not only one in the sample
of rows the data checks see."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelmill.config.schema import PipelineConfig
from modelmill.data.clean import CleaningReport, clean_rows
from modelmill.errors import DataError
from modelmill.features.base import Feature
from modelmill.sharding.dedup import drop_duplicates
from modelmill.sharding.read import ROW, Reading, Shards, dataset_of, frame_of, in_row_order

EXAMPLES = 50  # rows named per kind of unreadable cell, as the single-machine report keeps


def clean_shards(shards: Shards, config: PipelineConfig,
                 columns: Sequence[Feature[Any]]) -> tuple[Shards, CleaningReport]:
    """The shards cleaned (materialised on the cluster) and the cleaning report."""
    import ray

    report = CleaningReport(rows_in=shards.rows)
    if config.cleaning.duplicates == "drop":
        names = [f.name for f in config.features] + [config.target.name]
        shards, report.duplicates_dropped = drop_duplicates(shards, names)
    rowwise = config.model_copy(update={"cleaning": config.cleaning.model_copy(update={"duplicates": "keep"})})
    settings = ray.put((rowwise, list(columns), shards.reading))  # sent once, not once a block
    clean = ray.remote(_clean_block).options(num_returns=2)
    # one task a block: its kept rows and its report, or the error its rows raised (see _in_table)
    outputs: list[Any] = [clean.remote(block, settings) for block in shards.dataset.to_arrow_refs()]
    parts = ray.get([part for _, part in outputs])
    _raise_first(parts, shards)
    for part in parts:
        _add(report, part)
    report.rows_out = sum(part.rows_out for part in parts)
    return shards.with_dataset(dataset_of([kept for kept, _ in outputs]), report.rows_out), report


def _clean_block(block: pa.Table, settings: tuple[PipelineConfig, list[Feature[Any]], Reading]
                 ) -> tuple[pa.Table, CleaningReport | DataError]:
    """The block's rows that the single-machine cleaning keeps (in row order), and its report,
    which names rows by their position in the whole table; each feature's value check first.
    A DataError its rows raise (a word in a number column or target) is returned in place of
    the report, with the rows' positions in the whole table."""
    config, columns, reading = settings
    frame, rows = frame_of(block, reading)
    try:
        _validate(frame, columns)
        frame.index = rows
        frame[ROW] = rows
        cleaned, report = clean_rows(frame, config, columns)
    except DataError as error:
        return block.slice(0, 0), _in_table(error, rows)
    return in_row_order(block).filter(pa.array(np.isin(rows, cleaned[ROW].to_numpy()))), report


def check_values(shards: Shards, columns: Sequence[Feature[Any]]) -> None:
    """Each feature's check of its values (``validate``) on every block of ``shards``.

    Raises:
        DataError: the first block's (in row order) that fails, naming the source and the rows'
            positions in the whole table.
    """
    import ray

    settings = ray.put((list(columns), shards.reading))
    check = ray.remote(_check_block)
    _raise_first(ray.get([check.remote(block, settings) for block in shards.dataset.to_arrow_refs()]), shards)


def _check_block(block: pa.Table, settings: tuple[list[Feature[Any]], Reading]) -> DataError | None:
    columns, reading = settings
    frame, rows = frame_of(block, reading)
    try:
        _validate(frame, columns)
    except DataError as error:
        return _in_table(error, rows)
    return None


def _validate(frame: pd.DataFrame, columns: list[Feature[Any]]) -> None:
    for checks in columns:
        checks.validate(frame[checks.name])


def _in_table(error: DataError, rows: np.ndarray) -> DataError:
    """A block's error (its rows positions in the block, returned by the task rather than raised:
    a failed task has Ray log its traceback, on the console too, beside the message) with the
    rows' positions in the whole table."""
    return DataError(f"{error.detail} (counted in one block of the table; others may hold more)",
                     column=error.column, rows=rows[error.rows].tolist() if error.rows else None)


def _raise_first(parts: list[Any], shards: Shards) -> None:
    """Raise the first (in row order) of the DataErrors among the blocks' results, with the source."""
    errors = sorted((part for part in parts if isinstance(part, DataError)),
                    key=lambda error: min(error.rows, default=math.inf))  # one naming no row last
    if errors:
        raise DataError(errors[0].detail, source=shards.source, column=errors[0].column, rows=errors[0].rows)


def _add(total: CleaningReport, part: CleaningReport) -> None:
    """``part``'s counts added into ``total`` (examples kept up to ``EXAMPLES``, in row order)."""
    total.target_missing_dropped += part.target_missing_dropped
    for name, entry in part.columns.items():
        into = total.column(name)
        for key, value in entry.items():
            if isinstance(value, list):
                into[key] = sorted([*into.get(key, []), *value], key=_row_of)[:EXAMPLES]
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                into[key] = int(into.get(key, 0)) + int(value)
            else:  # the same setting in every batch (the missing-value strategy)
                into[key] = value


def _row_of(example: Any) -> int:
    return int(example["row"]) if isinstance(example, dict) and "row" in example else 0
