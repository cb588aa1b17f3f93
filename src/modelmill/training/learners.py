"""Fitting a learner (a model type with its own solver) and scoring what it fitted, so
its history has the same losses and validation metrics as an epoch of the trainer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from torch import nn

from modelmill.config.schema import TrainingConfig
from modelmill.features import Target
from modelmill.models import Learner, TensorData, TrainResult, predict_raw
from modelmill.training.callbacks import Callback, LoopState
from modelmill.training.runtime import process_settings
from modelmill.training.trainer import Scorer

# training settings that steer the shared torch trainer, which a learner's own solver never reads
TRAINER_ONLY = ("epochs", "batch_size", "optimizer", "scheduler", "l1", "l2", "grad_clip", "ema", "precision")


def ignored_settings(training: TrainingConfig) -> list[str]:
    """The trainer-only settings ``training`` changes from their defaults: a learner would ignore them."""
    default = TrainingConfig()
    return [f"training.{name}" for name in TRAINER_ONLY if getattr(training, name) != getattr(default, name)]


def fit_learner(learner: Learner[Any], module: nn.Module, train: TensorData, valid: TensorData,
                target: Target[Any], training: TrainingConfig, scorer: Scorer, monitor: str,
                callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Fit ``module`` by the learner's own procedure; the history row of its best iteration
    gets the training and validation losses and the validation metrics of the fitted module.
    The callbacks see each round of a learner that fits in rounds as an epoch, and the final
    row of one that does not."""
    state = LoopState()
    for callback in callbacks:
        callback.on_train_start(state, 0)

    def on_round(row: dict[str, float]) -> None:
        state.epoch = int(row.get("epoch", state.epoch + 1))
        for callback in callbacks:
            callback.on_epoch_end(state, row)

    with process_settings(training.threads, training.deterministic):
        # the hook goes only where a callback listens (a learner written before it existed still fits)
        hook = {"on_round": on_round} if callbacks else {}
        result = learner.fit(module, train, valid, target, training, **hook)
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
    if callbacks and not state.epoch:  # no rounds: the callbacks see the fit's one row
        on_round(row)
    state.best_value, state.best_epoch = best, result.best_epoch
    for callback in callbacks:
        callback.on_train_end(state)
    return replace(result, history=history, best_value=best)
