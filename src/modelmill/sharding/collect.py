"""Bringing small parts of shards to the driver: a whole part that fits (the validation
rows), a seeded sample (the profile, the data checks), and the fingerprint of the table,
the single-machine pipeline's ``data_sha256`` (a hash of every row's hash, in row order)
computed on the cluster so that only 8 bytes a row travel."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelmill.data.split import row_hashes
from modelmill.sharding.read import Reading, Shards, frame_of


def tables_of(dataset: Any) -> list[pa.Table]:
    """A Ray Dataset's non-empty blocks, fetched to the driver."""
    import ray

    return [table for table in ray.get(dataset.to_arrow_refs()) if table.num_rows]


def whole_frame(shards: Shards) -> pd.DataFrame:
    """All rows of ``shards`` as one frame, in row order (for a part that fits in memory)."""
    tables = tables_of(shards.dataset)
    if not tables:
        return pd.DataFrame()
    return frame_of(pa.concat_tables(tables, promote_options="default"), shards.reading)[0].reset_index(drop=True)


def sample_frame(shards: Shards, rows: int, *, seed: int) -> pd.DataFrame:
    """About ``rows`` rows drawn at random (each kept with the same chance), in row order."""
    if shards.rows <= rows:
        return whole_frame(shards)
    drawn = shards.dataset.random_sample(rows / shards.rows, seed=seed).materialize()
    return whole_frame(shards.with_dataset(drawn, int(drawn.count())))


def fingerprint(shards: Shards) -> str:
    """sha256 of the rows' hashes in row order: the single-machine fingerprint of the same table."""
    parts = shards.dataset.map_batches(_row_hashes, batch_format="pyarrow", batch_size=None,
                                       fn_kwargs={"reading": shards.reading}).take_all()
    digest = hashlib.sha256()
    for part in sorted(parts, key=lambda part: int(part["first"])):
        digest.update(part["hashes"])
    return digest.hexdigest()


def _row_hashes(batch: pa.Table, *, reading: Reading) -> dict[str, Any]:
    frame, rows = frame_of(batch, reading)
    hashes = row_hashes(frame, list(frame.columns))
    packed = np.empty(1, dtype=object)
    packed[0] = hashes.tobytes()
    return {"first": np.array([rows[0] if len(rows) else -1]), "hashes": packed}
