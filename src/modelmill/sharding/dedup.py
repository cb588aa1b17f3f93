"""Exact duplicate rows removed from shards by hash partitioning: every row's hash (of the
columns compared) picks its partition, so all copies of a row meet in one; each partition
is put in row order and keeps the first copy, by the single-machine rule itself
(``data.clean.duplicated_rows``: hashes compared first, then the values, so a collision
never drops a row). The rows kept and their count are those of the single-machine cleaning."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from modelmill.data.clean import duplicated_rows
from modelmill.data.image_values import hashable_frame
from modelmill.sharding.read import Reading, Shards, frame_of, in_row_order

PART = "__modelmill_partition"
ROWS_PER_PARTITION = 250_000  # a partition is deduplicated in one worker's memory


def drop_duplicates(shards: Shards, columns: Sequence[str], *, partitions: int | None = None) -> tuple[Shards, int]:
    """The shards without later copies of a row (compared on ``columns``), materialised on the
    cluster, and how many rows were dropped."""
    from ray.data.context import ShuffleStrategy

    count = partitions or max(2, -(-shards.rows // ROWS_PER_PARTITION))
    settings = {"columns": list(columns), "reading": shards.reading}
    tagged = shards.dataset.map_batches(_tag, batch_format="pyarrow", fn_kwargs={**settings, "partitions": count})
    # Ray Data's default shuffle (SHUFFLE_V2: hash partitioning through aggregator actors it starts for
    # each groupby) took 17 s to deduplicate 2 million rows on two cores and 11 s for 6,000 rows; its
    # pull-based sort shuffle (map tasks, then reduce tasks, no actors) 7 s and 3.6 s. (The setting
    # lands in the context the datasets derived from one read share; nothing else shuffles them.)
    tagged.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    kept = tagged.groupby(PART).map_groups(_first_copies, batch_format="pyarrow", fn_kwargs=settings).materialize()
    rows = int(kept.count())
    return shards.with_dataset(kept, rows), shards.rows - rows


def _tag(batch: pa.Table, *, columns: list[str], reading: Reading, partitions: int) -> pa.Table:
    frame, _ = frame_of(batch, reading)
    hashes = pd.util.hash_pandas_object(hashable_frame(frame[columns]), index=False).to_numpy()
    return in_row_order(batch).append_column(PART, pa.array((hashes % np.uint64(partitions)).astype(np.int64)))


def _first_copies(group: pa.Table, *, columns: list[str], reading: Reading) -> pa.Table:
    group = group.drop_columns([PART])
    frame, _ = frame_of(group, reading)
    return in_row_order(group).filter(pa.array(~duplicated_rows(hashable_frame(frame[columns]))))
