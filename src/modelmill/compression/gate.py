"""The accuracy gate and what a derived bundle records of its model: the metric on the same
labelled rows before and after, the model's size, and its forward latency.

The gate refuses a result whose metric is worse than the parent's by more than
``max_drop`` (in the metric's own units: 0.005 is half a point of accuracy or of ROC-AUC).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from modelmill.errors import DataError, ModelmillError
from modelmill.evaluation.metrics import check_metric, default_metric, metric_direction
from modelmill.predictor import Predictor
from modelmill.scoring import metrics_of

LATENCY_BATCH = 64
LATENCY_ROWS = 10_000  # the large batch: all the rows judged on, at most this many


class GateRefused(ModelmillError):
    """The compressed model lost more than the gate allows; nothing was written."""


@dataclass(frozen=True)
class Measured:
    """One model on the gate's rows."""

    metric: str
    value: float
    metrics: dict[str, Any]
    size_bytes: int
    latency_ms: dict[str, float]

    def as_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "size_bytes": self.size_bytes,
                "latency_ms": self.latency_ms, "metrics": self.metrics}


def gate_metric(predictor: Predictor, metric: str | None) -> str:
    """The metric the gate compares: ``metric``, else the one training chose the model by."""
    task = predictor.target.task
    chosen = metric or predictor.config.training.early_stopping.metric
    if chosen in ("auto", "loss"):
        chosen = default_metric(task)
    return check_metric(task, chosen, "--metric")


def measure(predictor: Predictor, rows: pd.DataFrame, metric: str, size_bytes: int, *,
            latency: bool = True) -> Measured:
    """The model's metrics on ``rows``, and its forward latency (the model alone, on input
    tensors made beforehand) at batch 64 and on all the rows (at most 10,000)."""
    target = predictor.target
    inputs = predictor.inputs(rows)
    lengths = predictor.lengths(inputs)
    raw = predictor.runtime.raw(inputs, lengths)
    truth = target.codes(rows[target.name])
    metrics = {k: v for k, v in metrics_of(target, raw, truth).items() if isinstance(v, (int, float))}
    if metric not in metrics or not np.isfinite(metrics[metric]):
        raise DataError(f"the metric {metric} cannot be computed on these rows (one class only?); choose "
                        "another with --metric")
    timings = _latency(predictor, inputs) if latency else {}
    return Measured(metric, float(metrics[metric]), metrics, size_bytes, timings)


def _latency(predictor: Predictor, inputs: list[torch.Tensor]) -> dict[str, float]:
    rows = int(inputs[0].shape[0])
    small = [x[:LATENCY_BATCH] for x in inputs]
    large = [x[:LATENCY_ROWS] for x in inputs]
    run = predictor.runtime.raw
    timings = {f"batch_{min(rows, LATENCY_BATCH)}": _median_ms(lambda: run(small, predictor.lengths(small)), 30)}
    if rows > LATENCY_BATCH:
        timings[f"batch_{min(rows, LATENCY_ROWS)}"] = _median_ms(lambda: run(large, predictor.lengths(large)), 3)
    return timings


def _median_ms(call: Any, repeats: int) -> float:
    call()  # the first call pays one-off costs (allocations, a session's first run)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 4)


def relative_metric(task: str, metric: str) -> bool:
    """Whether the gate weighs a change of this metric against its value: the errors of a
    number target are in the target's units (0.005 of a price's RMSE means nothing), the
    other metrics are shares (accuracy, ROC-AUC, R²)."""
    return task == "number" and metric != "r2"


def drop_of(before: Measured, after: Measured, *, relative: bool = False) -> float:
    """How much worse ``after`` is (positive: worse), whichever way the metric points; with
    ``relative``, as a share of ``before``'s value."""
    worse = before.value - after.value if metric_direction(before.metric) == "max" else after.value - before.value
    return worse / max(abs(before.value), 1e-12) if relative else worse


def check_gate(before: Measured, after: Measured, max_drop: float, what: str, rows: str, *,
               relative: bool = False) -> float:
    """The drop, or GateRefused when it is larger than ``max_drop``."""
    drop = drop_of(before, after, relative=relative)
    if drop > max_drop:
        share = " of its value" if relative else ""
        raise GateRefused(f"{what} was refused by the accuracy gate: {before.metric} went from {before.value:.4f} to "
                          f"{after.value:.4f} on {rows} (worse by {drop:.4f}{share}; at most {max_drop} is allowed). "
                          "Nothing was written. Fix: compress less (a lower --sparsity, fine-tuning with "
                          "--finetune-epochs), or allow more with --max-drop")
    return drop


def artifacts_size(artifacts: Mapping[str, bytes]) -> int:
    return sum(len(data) for data in artifacts.values())
