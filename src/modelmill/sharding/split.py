"""Splitting shards into train, validation and test by a seeded hash: each row's part is
decided by its own position in the whole table (``ROW``), or by its group's value for
``method: group``, so that no batch needs to see another. The fractions are those of the
config (``test``, then ``valid`` of the rest) up to the binomial spread of a hash, and the
rows differ from the single-machine split, which shuffles the whole table: a model trained
in shards is not scored on the same test rows as one trained on one machine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from modelmill.config.schema import SplitConfig
from modelmill.data.image_values import hashable_frame
from modelmill.errors import ConfigError
from modelmill.sharding.read import ROW, Reading, Shards, frame_of, in_row_order

PARTS = ("train", "valid", "test")
METHODS = ("random", "stratified", "group")
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def check_split(split: SplitConfig) -> None:
    """Refuse a split that needs the whole table at once.

    Raises:
        ConfigError: method time, column or files.
    """
    if split.method not in METHODS:
        raise ConfigError(f"split method {split.method!r} is not available with data.shards: a time split orders "
                          "the whole table, and files or a split column would need their own readers. Fix: "
                          "method: random, stratified or group (by a seeded hash), or data.shards: false",
                          path="data.split.method")


def split_shards(shards: Shards, split: SplitConfig) -> dict[str, Shards]:
    """The shards' rows in train, valid and test (each materialised on the cluster)."""
    check_split(split)
    settings = {"split": split, "reading": shards.reading}
    parts = {}
    for part in PARTS:
        dataset = shards.dataset.map_batches(_rows_of, batch_format="pyarrow", batch_size=None,
                                             fn_kwargs={**settings, "part": part}).materialize()
        parts[part] = shards.with_dataset(dataset, int(dataset.count()))
    return parts


def part_of(keys: np.ndarray, split: SplitConfig) -> np.ndarray:
    """Each key's part (0 train, 1 valid, 2 test): a uniform draw from the key and the seed."""
    seed = _mix(np.array([split.seed % 2**64], dtype=np.uint64))[0]  # a negative seed too
    draw = _mix(keys.astype(np.uint64) ^ seed)
    uniform = (draw >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    part = np.zeros(len(keys), dtype=np.int8)
    part[uniform < split.test + (1 - split.test) * split.valid] = 1
    part[uniform < split.test] = 2
    return part


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: consecutive positions become independent-looking 64-bit draws."""
    with np.errstate(over="ignore"):
        z = (values + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _rows_of(batch: pa.Table, *, split: SplitConfig, reading: Reading, part: str) -> pa.Table:
    ordered = in_row_order(batch)
    if split.method == "group":
        frame, _ = frame_of(batch, reading)
        keys = pd.util.hash_pandas_object(hashable_frame(frame[[str(split.column)]]), index=False).to_numpy()
    else:
        keys = ordered.column(ROW).to_numpy()
    return ordered.filter(pa.array(part_of(keys, split) == PARTS.index(part)))
