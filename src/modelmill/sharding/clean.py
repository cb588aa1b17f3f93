"""Cleaning shards: exact duplicates removed by hash partitioning (``sharding.dedup``), then
every batch cleaned by the single-machine rules themselves (``data.clean.clean_rows``: rows
without a target, with an unreadable cell, or missing a value whose feature asks for
``drop``), which look at one row at a time. The per-batch reports are summed into one, the
report the single-machine cleaning gives for the same table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from modelmill.config.schema import PipelineConfig
from modelmill.data.clean import CleaningReport, ColumnRules, clean_rows
from modelmill.sharding.dedup import drop_duplicates
from modelmill.sharding.read import ROW, Reading, Shards, frame_of, in_row_order

EXAMPLES = 50  # rows named per kind of unreadable cell, as the single-machine report keeps


def clean_shards(shards: Shards, config: PipelineConfig,
                 columns: Sequence[ColumnRules]) -> tuple[Shards, CleaningReport]:
    """The shards cleaned (materialised on the cluster) and the cleaning report."""
    report = CleaningReport(rows_in=shards.rows)
    if config.cleaning.duplicates == "drop":
        names = [f.name for f in config.features] + [config.target.name]
        shards, report.duplicates_dropped = drop_duplicates(shards, names)
    rowwise = config.model_copy(update={"cleaning": config.cleaning.model_copy(update={"duplicates": "keep"})})
    settings = {"config": rowwise, "columns": list(columns), "reading": shards.reading}
    reports = shards.dataset.map_batches(_batch_report, batch_format="pyarrow", batch_size=None,
                                         fn_kwargs=settings).take_all()
    for row in reports:
        _add(report, row["report"])
    kept = shards.dataset.map_batches(_kept, batch_format="pyarrow", batch_size=None, fn_kwargs=settings)
    kept = kept.materialize()
    rows = int(kept.count())
    report.rows_out = rows
    return shards.with_dataset(kept, rows), report


def _cleaned(batch: pa.Table, config: PipelineConfig, columns: list[ColumnRules],
             reading: Reading) -> tuple[pa.Table, CleaningReport]:
    """The batch's rows that the single-machine cleaning keeps (in row order), and its report,
    which names rows by their position in the whole table."""
    frame, rows = frame_of(batch, reading)
    frame.index = rows
    frame[ROW] = rows
    cleaned, report = clean_rows(frame, config, columns)
    return in_row_order(batch).filter(pa.array(np.isin(rows, cleaned[ROW].to_numpy()))), report


def _batch_report(batch: pa.Table, *, config: PipelineConfig, columns: list[ColumnRules],
                  reading: Reading) -> dict[str, np.ndarray]:
    report = np.empty(1, dtype=object)
    report[0] = _cleaned(batch, config, columns, reading)[1]
    return {"report": report}


def _kept(batch: pa.Table, *, config: PipelineConfig, columns: list[ColumnRules], reading: Reading) -> pa.Table:
    return _cleaned(batch, config, columns, reading)[0]


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
