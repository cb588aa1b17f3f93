"""Pruning a trial from its validation curve: a training callback that reports the watched
metric to the Optuna trial after each epoch (each boosting round; each fit of a folded or
ensembled model) and stops the trial when the pruner says it is worse than the others."""

from __future__ import annotations

import math
from typing import Any

from modelmill.training import Callback
from modelmill.training.callbacks import LoopState

FIT_STRIDE = 100_000  # steps reserved per fit: fit k's epoch e is step k * FIT_STRIDE + e
PRUNE_FROM_EPOCH = 5  # earlier epochs are reported but never prune: a first round says little of the last


def reported(epoch: int) -> bool:
    """Which epochs are reported: each of the first ten, then every 25th. A tree model's
    thousands of rounds would otherwise cost a database write each; every trial reports
    the same steps, so the pruner compares like with like."""
    return 0 < epoch <= 10 or epoch % 25 == 0


class TrialPruning(Callback):
    """Reports ``valid_<metric>`` of every epoch row to ``trial`` and raises Optuna's
    ``TrialPruned`` when the trial should stop. A model fitted several times in one trial (an
    ensemble's members, each fold) reports each fit at its own steps, so fold 2 of one trial
    is compared with fold 2 of the others."""

    def __init__(self, trial: Any, metric: str, pruned: type[Exception]) -> None:
        self.trial, self.key, self.pruned = trial, f"valid_{metric}", pruned
        self.fits = -1
        self.last_step: int | None = None

    def on_train_start(self, state: LoopState, total_epochs: int) -> None:
        self.fits += 1

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        value = row.get(self.key)
        epoch = int(row.get("epoch", state.epoch))
        if value is None or not math.isfinite(value) or not reported(epoch):
            return
        step = max(self.fits, 0) * FIT_STRIDE + epoch
        self.trial.report(float(value), step)
        self.last_step = step
        if epoch >= PRUNE_FROM_EPOCH and self.trial.should_prune():
            raise self.pruned(f"pruned at fit {max(self.fits, 0) + 1}, epoch {epoch}: {self.key} {value:.4f}")
