"""Global importance of each input column by permutation (Breiman 2001; the definition of
scikit-learn's ``permutation_importance``): how much the metric training chose the model
by drops when a column's values are shuffled across the rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from modelmill.data.validate import check_columns
from modelmill.errors import DataError
from modelmill.predictor import Predictor

# Evaluation and scoring are imported where importance is computed: a server that explains
# records (this package's attributions) imports neither.


def _scorer(predictor: Predictor, metric: str, truth: np.ndarray) -> Callable[[list[torch.Tensor]], float]:
    """The metric of the model's outputs on encoded inputs, larger always better."""
    from modelmill.evaluation.metrics import metric_direction
    from modelmill.scoring import metrics_of

    sign = 1.0 if metric_direction(metric) == "max" else -1.0

    def score(inputs: list[torch.Tensor]) -> float:
        value = metrics_of(predictor.target, predictor.runtime.raw(inputs, predictor.lengths(inputs)),
                           truth).get(metric)
        return sign * float(value) if value is not None else float("nan")

    return score


def chosen_metric(predictor: Predictor) -> str:
    """The metric training chose the model by: the config's early-stopping metric, else the task's default."""
    from modelmill.evaluation.metrics import check_metric, default_metric

    task = predictor.target.task
    named = predictor.config.training.early_stopping.metric
    if named == "auto":
        return default_metric(task)
    return check_metric(task, named, path="training.early_stopping.metric")


def importance(predictor: Predictor, frame: pd.DataFrame, *, repeats: int = 5, seed: int = 0,
               metric: str | None = None, rows: int | None = None,
               source: str = "the frame") -> dict[str, tuple[float, float]]:
    """Each input column's permutation importance on labelled rows, largest first.

    Args:
        predictor: The fitted pipeline.
        frame: Labelled rows (every input column and the target; rows without a label are left out).
        repeats: Shuffles per column.
        seed: Seed of the shuffles.
        metric: The metric to score by (None: the one training chose the model by).
        rows: Score on at most this many labelled rows, drawn with ``seed`` (None: all).
        source: What ``frame`` is, for error messages.

    Returns:
        Column → (mean, std) of the metric's drop over the shuffles (larger: more important;
        for an error metric such as rmse, its rise).

    Raises:
        DataError: a column or the target is missing, or no row is labelled.
    """
    names = [f.name for f in predictor.features]
    target = predictor.target
    check_columns(frame, names + [target.name], source=source)
    known = frame.loc[target.labelled(frame[target.name])]
    if known.empty:
        raise DataError("has no labelled rows, and permutation importance scores labelled rows", source=source,
                        column=target.name)
    if rows is not None and len(known) > rows:
        known = known.sample(n=rows, random_state=seed)
    score = _scorer(predictor, metric or chosen_metric(predictor), target.codes(known[target.name]))
    # Every feature transforms each row on its own, so shuffling a column's rows and
    # shuffling the rows of its encoded tensors give the same inputs: the columns are encoded
    # once, not once per shuffle (75 columns × 3 shuffles re-encoded cost seconds per report).
    table = known[names].reset_index(drop=True)
    inputs = predictor.inputs(table)
    slots = predictor.input_slots()
    baseline = score(inputs)
    rng = np.random.default_rng(seed)
    drops = np.empty((len(names), repeats))
    for column, positions in enumerate(slots):
        # a streamed image column is read lazily (its cells, not its pixels): shuffled as a column
        # and encoded again, as indexing it would decode every row at once
        lazy = any(not isinstance(inputs[i], torch.Tensor) for i in positions)
        for repeat in range(repeats):
            order = rng.permutation(len(known))
            if lazy:
                encoded = predictor.inputs(table.assign(**{names[column]: table[names[column]].to_numpy()[order]}))
                shuffled = [encoded[i] if i in positions else x for i, x in enumerate(inputs)]
            else:
                picked = torch.from_numpy(order)
                shuffled = [x[picked] if i in positions else x for i, x in enumerate(inputs)]
            drops[column, repeat] = baseline - score(shuffled)
    means, stds = drops.mean(axis=1), drops.std(axis=1)
    pairs = {name: (float(mean), float(std)) for name, mean, std in zip(names, means, stds, strict=True)}
    return dict(sorted(pairs.items(), key=lambda item: -item[1][0]))
