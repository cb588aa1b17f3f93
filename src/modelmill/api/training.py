"""The training stage of ``Pipeline.fit``: the metric it watches, differential privacy's
callback, the model fitted (one model, or ``auto``'s and ``ensemble``'s candidates), and the
threshold and calibration chosen on the held-out predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from modelmill.config import PipelineConfig
from modelmill.config.models import AutoModelConfig
from modelmill.errors import ConfigError
from modelmill.evaluation.metrics import Task, check_metric, default_metric, metric_direction
from modelmill.features import Target
from modelmill.models.ensemble import Weighted
from modelmill.predictor import Predictor
from modelmill.scoring import metrics_of
from modelmill.training import Callback, TensorData, TrainResult
from modelmill.training.decision import decide, needs_held_out
from modelmill.training.ensemble import fit_ensemble
from modelmill.training.fitting import FitSettings, fit_model
from modelmill.training.privacy import DifferentialPrivacy
from modelmill.training.streams import ALL_AT_ONCE, StreamedRows

NO_HELD_OUT = ("threshold: auto and calibration are chosen on held-out predictions, and this run holds no "
               "rows out: set data.split.valid above 0, or use model type auto or ensemble (which predict "
               "every row out of fold on small tables)")


def monitored_metric(config: PipelineConfig, task: Task) -> str:
    """The metric early stopping watches, and ensembles are weighed and reported by."""
    metric = config.training.early_stopping.metric
    return default_metric(task) if metric == "auto" else metric


def private_training(config: PipelineConfig, target: Target[Any]) -> DifferentialPrivacy | None:
    """With ``training.privacy``: the DP-SGD callback (it keeps what the fit spent); else None.

    Raises:
        ConfigError: class weights with privacy (one row's gradient would depend on the others).
    """
    settings = config.training.privacy
    if settings is None:
        return None
    if target.class_weights is not None:  # a weighted mean divides by the batch's total weight: rows not apart
        raise ConfigError("class weights cannot be combined with training.privacy: the weighted loss divides by "
                          "the weight of the whole batch, so one row's gradient depends on the others and DP-SGD "
                          "cannot bound it. Fix: class_weights: none", path="target.class_weights")
    return DifferentialPrivacy(settings, seed=config.training.seed)


def train_model(config: PipelineConfig, parts: Predictor, train: TensorData | StreamedRows, valid: TensorData, *,
                callbacks: Sequence[Callback], run_dir: Path | None, resume: bool,
                key: bytes | None) -> TrainResult:
    """``parts.model`` fitted on ``train`` (chosen on ``valid``), with the caller's ``callbacks``;
    checkpoints in ``run_dir`` (sealed with ``key``), ``resume`` from them."""
    task = parts.target.task
    monitor = monitored_metric(config, task)
    check_metric(task, monitor, "training.early_stopping.metric")
    mode: Literal["max", "min"] = "min" if monitor == "loss" else metric_direction(monitor)
    target = parts.target

    def scorer(raw: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
        metrics = metrics_of(target, raw, target.untransform(truth))
        return {k: v for k, v in metrics.items() if isinstance(v, float)}

    settings = FitSettings(config.training, target, scorer, monitor, mode, list(callbacks),
                           persist_cache=key is None)
    if isinstance(parts.maker, Weighted):
        if isinstance(train, StreamedRows):
            raise ConfigError(f"model type {config.model.type!r} {ALL_AT_ONCE}", path="model.type")
        model = config.model
        return fit_ensemble(parts.maker, parts.model, train, valid, settings, features=parts.features,
                            time_split=config.data.split.method == "time",
                            time_budget=(model.time_budget or "sized") if isinstance(model, AutoModelConfig)
                            else None)
    return fit_model(parts.maker, parts.model, train, valid, settings,
                     checkpoint_dir=run_dir / "checkpoints" if run_dir else None, resume=resume,
                     checkpoint_key=key)


def decide_threshold(config: PipelineConfig, parts: Predictor, result: TrainResult) -> dict[str, Any]:
    """The target's threshold and calibration, chosen on the held-out predictions.

    Raises:
        ConfigError: they are asked for and the fit held no rows out.
    """
    if not needs_held_out(config.target):
        return {}
    if result.held_out_raw is None or result.held_out_target is None:
        raise ConfigError(NO_HELD_OUT, path="target")
    where = "the out-of-fold predictions" if isinstance(parts.maker, Weighted) else "the validation split"
    return decide(parts.target, result.held_out_raw, result.held_out_target, where=where)
