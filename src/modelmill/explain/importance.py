"""Global importance of each input column by permutation (Breiman 2001; scikit-learn's
``permutation_importance`` over the predictor): how much the metric training chose the model
by drops when a column's values are shuffled across the rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelmill.data.validate import check_columns
from modelmill.errors import DataError
from modelmill.predictor import Predictor

# Evaluation, scoring and scikit-learn are imported where importance is computed: a server
# that explains records (this package's attributions) imports none of them.


class _Scored:
    """The fitted predictor as a scikit-learn estimator (it is fitted already: ``fit`` only
    returns it), and the scorer that reads its metric, larger always better."""

    def __init__(self, predictor: Predictor, metric: str) -> None:
        from modelmill.evaluation.metrics import metric_direction

        self.predictor, self.metric = predictor, metric
        self.sign = 1.0 if metric_direction(metric) == "max" else -1.0

    def fit(self, x: Any, y: Any = None) -> _Scored:
        return self

    def score(self, estimator: Any, x: pd.DataFrame, y: np.ndarray) -> float:
        from modelmill.scoring import metrics_of

        raw = self.predictor.raw(x)
        value = metrics_of(self.predictor.target, raw, y).get(self.metric)
        return self.sign * float(value) if value is not None else float("nan")


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
    from sklearn.inspection import permutation_importance

    names = [f.name for f in predictor.features]
    target = predictor.target
    check_columns(frame, names + [target.name], source=source)
    known = frame.loc[target.labelled(frame[target.name])]
    if known.empty:
        raise DataError("has no labelled rows, and permutation importance scores labelled rows", source=source,
                        column=target.name)
    if rows is not None and len(known) > rows:
        known = known.sample(n=rows, random_state=seed)
    scored = _Scored(predictor, metric or chosen_metric(predictor))
    x = known[names].reset_index(drop=True)
    result = permutation_importance(scored, x, target.codes(known[target.name]), scoring=scored.score,
                                    n_repeats=repeats, random_state=seed, n_jobs=None)
    pairs = {name: (float(mean), float(std))
             for name, mean, std in zip(names, result.importances_mean, result.importances_std, strict=True)}
    return dict(sorted(pairs.items(), key=lambda item: -item[1][0]))
