"""Scoring a fitted predictor on labelled rows: the metrics of the target's task and the
evaluation plots, the decision's cost, bootstrap intervals of the metrics. Used by
``Pipeline`` (test split, ``evaluate``) and, through a scorer, by the trainer's validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from modelmill.encryption import seal_if
from modelmill.errors import DataError
from modelmill.files import atomic_write_bytes
from modelmill.evaluation.card import bootstrap_intervals
from modelmill.evaluation.metrics import compute_metrics
from modelmill.features import Target
from modelmill.models.ensemble import Weighted
from modelmill.predictor import Predictor
from modelmill.training.decision import total_cost


def metrics_of(target: Target[Any], raw: torch.Tensor, truth: np.ndarray) -> dict[str, Any]:
    """Metrics of raw model outputs against true values given as codes (or numbers)."""
    predictions = target.postprocess(raw)
    if target.task == "number":
        return compute_metrics("number", truth.astype("float64"), predictions.codes)
    truth = truth.astype("int64")
    proba = predictions.proba
    if target.task == "binary" and proba is not None:
        proba = proba[:, 1]
    return compute_metrics(target.task, truth, predictions.codes, proba, target.class_names)


def score(predictor: Predictor, frame: pd.DataFrame, *, plots: bool, plots_dir: Path | None,
          history: list[dict[str, float]], key: bytes | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Metrics on the labelled rows of ``frame``, and the plots as PNG bytes, drawn in memory
    (also written to ``plots_dir`` when given: sealed as ``plots/NAME.png`` with ``key``)."""
    target = predictor.target
    known = target.labelled(frame[target.name])
    if not known.any():
        raise DataError("no row has a known target value to evaluate against", column=target.name)
    frame = frame.loc[known]
    return score_outputs(target, predictor.raw(frame), frame, plots=plots, plots_dir=plots_dir, history=history,
                         key=key)


def score_outputs(target: Target[Any], raw: torch.Tensor, frame: pd.DataFrame, *, plots: bool,
                  plots_dir: Path | None, history: list[dict[str, float]],
                  key: bytes | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """:func:`score` of raw model outputs already made (the outputs of rows in shards, say), on
    the rows of ``frame`` (their target values) that are labelled."""
    known = target.labelled(frame[target.name])
    if not known.any():
        raise DataError("no row has a known target value to evaluate against", column=target.name)
    if not known.all():
        raw, frame = raw[torch.from_numpy(known)], frame.loc[known]
    truth = target.codes(frame[target.name])
    metrics = metrics_of(target, raw, truth)
    pngs: dict[str, bytes] = {}
    if plots:
        from modelmill.evaluation.plots import render_plots  # matplotlib: only when plots are asked for

        predictions = target.postprocess(raw)
        proba = predictions.proba[:, 1] if target.task == "binary" and predictions.proba is not None \
            else predictions.proba
        pngs = render_plots(target.task, np.asarray(truth), predictions.codes, proba, target.class_names, history)
        if plots_dir is not None:
            write_files(plots_dir, pngs, key)
    return metrics, pngs


def write_files(folder: Path, files: dict[str, bytes], key: bytes | None) -> None:
    """Write ``files`` into ``folder`` atomically, each sealed as ``FOLDER/NAME`` with ``key``."""
    for name, data in files.items():
        atomic_write_bytes(folder / name, seal_if(data, key, f"{folder.name}/{name}"))


def decision_metrics(target: Any, raw: torch.Tensor, test: pd.DataFrame) -> dict[str, Any]:
    """Test-split figures of the decision: the total cost at the chosen threshold and at 0.5
    when costs are configured."""
    costs = getattr(target.config, "costs", None)
    if target.task != "binary" or costs is None:
        return {}
    known = target.labelled(test[target.name])
    truth = target.codes(test[target.name])[known]
    positive = target.positive_probability(raw[torch.from_numpy(known)])
    return {"threshold": target.threshold_,
            "cost": total_cost(positive, truth, target.threshold_, costs.false_positive, costs.false_negative),
            "cost_at_0.5": total_cost(positive, truth, 0.5, costs.false_positive, costs.false_negative)}


def class_rows(target: Target[Any], frame: pd.DataFrame) -> dict[str, int]:
    """Rows per class of ``frame`` (in class order; empty for a number target)."""
    names = list(target.class_names)
    if not names:
        return {}
    codes = target.codes(frame[target.name])
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    return {str(name): int(count) for name, count in zip(names, counts)}


INTERVAL_ROWS = 20_000


def metric_intervals(target: Target[Any], raw: torch.Tensor, test: pd.DataFrame, *,
                     seed: int) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of the test metrics, over the labelled test rows (at most
    ``INTERVAL_ROWS`` of them, drawn once: 200 resamples of a million rows would cost minutes)."""
    known = target.labelled(test[target.name])
    if known.sum() > INTERVAL_ROWS:
        chosen = np.random.default_rng(seed).choice(np.flatnonzero(known), INTERVAL_ROWS, replace=False)
        known = np.zeros_like(known)
        known[chosen] = True
    truth = target.codes(test[target.name])[known]
    labelled = raw[torch.from_numpy(known)].detach().cpu().numpy()  # numpy's gather: ~100× torch's here
    return bootstrap_intervals(lambda rows: metrics_of(target, torch.from_numpy(labelled[rows]), truth[rows]),
                               len(truth), seed=seed)


def candidate_scores(parts: Predictor, members: Sequence[Mapping[str, Any]], test: pd.DataFrame,
                     metric: str) -> list[dict[str, Any]]:
    """An ensemble's record per candidate (``members``, from its fit), with each fitted one's
    ``metric`` on the labelled test rows alone."""
    if not members or not isinstance(parts.maker, Weighted):
        return []
    known = test.loc[parts.target.labelled(test[parts.target.name])]
    truth = parts.target.codes(known[parts.target.name])
    raws = parts.maker.predict_members(parts.model, parts.inputs(known))
    records = []
    for record in members:
        record = dict(record)
        if record["name"] in raws:
            record["test"] = metrics_of(parts.target, raws[record["name"]], truth).get(metric)
        records.append(record)
    return records
