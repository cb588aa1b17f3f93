"""Transforming shards with fitted features: each batch through the features' own
``transform``, on the cluster, giving per feature the arrays the whole column's transform
gives for those rows (text pads to the longest text of its batch, not of the column)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from modelmill.features.base import Feature
from modelmill.sharding.read import ROW, Reading, Shards, frame_of


def transform_shards(shards: Shards, features: Sequence[Feature[Any]]) -> Any:
    """A Ray Dataset with ``ROW`` and one column per feature: its transform of each row
    ((rows,) or (rows, ...) arrays as Ray tensor columns)."""
    return shards.dataset.map_batches(_transform, batch_format="pyarrow", batch_size=None,
                                      fn_kwargs={"features": list(features), "reading": shards.reading})


def _transform(batch: pa.Table, *, features: list[Feature[Any]], reading: Reading) -> dict[str, np.ndarray]:
    frame, rows = frame_of(batch, reading)
    out: dict[str, np.ndarray] = {ROW: rows}
    for feature in features:
        out[feature.name] = feature.transform(frame[feature.name]).numpy()
    return out
