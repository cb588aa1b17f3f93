"""Scoring a fitted predictor on labelled rows: the metrics of the target's task and the
evaluation plots. Used by ``Pipeline`` (test split, ``evaluate``) and, through a scorer,
by the trainer's validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from modelmill.encryption import seal_if
from modelmill.errors import DataError
from modelmill.files import atomic_write_bytes
from modelmill.evaluation.metrics import compute_metrics
from modelmill.features import Target
from modelmill.predictor import Predictor


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
    raw = predictor.raw(frame)
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
