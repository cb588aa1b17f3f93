"""Data in shards on a Ray cluster: a Parquet or CSV source read as a Ray Dataset, exact
duplicates removed by hash partitioning, rows cleaned per batch and split by a seeded hash,
features fitted from mergeable per-shard statistics and shards transformed by the same
feature code, each equal to what the single-machine pipeline does on the whole table
(``features.partials`` says how exactly); ``api.sharded`` runs them as ``data.shards``.

Ray is an optional extra: it is imported inside these functions, never at import."""

from __future__ import annotations

from modelmill.sharding.clean import clean_shards
from modelmill.sharding.dedup import drop_duplicates
from modelmill.sharding.fit import fit_features, partials_of
from modelmill.sharding.read import ROW, Reading, Shards, frame_of, read_shards, source_files
from modelmill.sharding.split import split_shards
from modelmill.sharding.transform import transform_shards

__all__ = ["ROW", "Reading", "Shards", "clean_shards", "drop_duplicates", "fit_features", "frame_of", "partials_of",
           "read_shards", "source_files", "split_shards", "transform_shards"]
