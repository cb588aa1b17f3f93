"""Fitting a learner (a model type with its own solver) and scoring what it fitted, so
its history has the same losses and validation metrics as an epoch of the trainer."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from modelmill.config.schema import TrainingConfig
from modelmill.features import Target
from modelmill.models import Learner, TensorData, TrainResult, predict_raw
from modelmill.training.runtime import process_settings
from modelmill.training.trainer import Scorer


def fit_learner(learner: Learner[Any], module: nn.Module, train: TensorData, valid: TensorData,
                target: Target[Any], training: TrainingConfig, scorer: Scorer, monitor: str) -> TrainResult:
    """Fit ``module`` by the learner's own procedure; the history row of its best iteration
    gets the training and validation losses and the validation metrics of the fitted module."""
    with process_settings(training.threads, training.deterministic):
        result = learner.fit(module, train, valid, target, training)
        loss = target.loss()
        train_raw = predict_raw(module, train.inputs, lengths=train.lengths).float()
        # a learner that refitted on the validation rows gives what it predicted before
        valid_raw = (result.held_out_raw if result.held_out_raw is not None
                     else predict_raw(module, valid.inputs, lengths=valid.lengths)).float()
    history = [dict(row) for row in result.history] or [{"epoch": 1.0, "seconds": result.seconds}]
    row = history[result.best_epoch - 1] if 0 < result.best_epoch <= len(history) else history[-1]
    row.update({"train_loss": float(loss(train_raw, train.target)), "valid_loss": float(loss(valid_raw, valid.target))})
    row.update({f"valid_{k}": v for k, v in scorer(valid_raw, valid.target).items()})
    best = result.best_value if result.best_value is not None else row.get(f"valid_{monitor}")
    return replace(result, history=history, best_value=best)
