"""Fitting features from shards: each batch's partial statistics (the feature's own
``partial``, on the batch's frame) computed on the cluster with ``map_batches``, merged on
the driver (``features.partials.merge_all``), and the features fitted from the merge
(``fit_from``): the state ``fit`` gives on the whole column (see ``features.partials`` for
what is exact and what is within a tolerance). The fitted state is plain data, so it goes
back to the workers with the features for ``transform_shards``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from modelmill.features.base import Component
from modelmill.features.partials import Partial, merge_all
from modelmill.sharding.read import Reading, Shards, frame_of

C = TypeVar("C", bound=Component[Any])


def partials_of(shards: Shards, features: Sequence[Component[Any]]) -> list[list[Partial]]:
    """Per feature, the partials of every batch (computed on the cluster)."""
    results = shards.dataset.map_batches(
        _partials, batch_format="pyarrow", batch_size=None,
        fn_kwargs={"features": list(features), "reading": shards.reading}).take_all()
    per_batch: list[list[Partial]] = [row["partials"] for row in results]
    return [[batch[i] for batch in per_batch] for i in range(len(features))]


def _partials(batch: pa.Table, *, features: list[Component[Any]], reading: Reading) -> dict[str, np.ndarray]:
    frame, rows = frame_of(batch, reading)
    partials = np.empty(1, dtype=object)  # one row: this batch's partial of every feature
    partials[0] = [feature.partial(frame[feature.name], rows) for feature in features]
    return {"partials": partials}


def fit_features(shards: Shards, features: Sequence[C]) -> list[C]:
    """``features`` (input features, and the target too if given) fitted from the merged
    partials of every shard; a type that cannot be fitted so (text, images) refuses before
    any work on the cluster."""
    check_partials(features)
    merged = partials_of(shards, features)
    return [feature.fit_from(merge_all(partials)) for feature, partials in zip(features, merged)]


def check_partials(features: Sequence[Component[Any]]) -> None:
    """Refuse a type that cannot be fitted from shards: it says so on an empty column.

    Raises:
        ModelError: naming the feature and its type.
    """
    for feature in features:
        feature.partial(_empty(feature), np.empty(0, dtype=np.int64))


def _empty(feature: Component[Any]) -> pd.Series:
    return pd.Series([], dtype=object, name=feature.name)
