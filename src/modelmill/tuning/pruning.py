"""Pruning a trial from its validation curves: a training callback that reports the watched
metric to the Optuna trial after each epoch (each boosting round) and at the end of each fit
(a folded or ensembled model fits several times in one trial), and stops the trial when the
pruner finds it worse than the earlier trials at the same point.

Where it asks the pruner matters more than how often it reports. Early in a fit the curves
of different settings are ordered by their speed, not by where they end: a learning rate of
0.01 is behind one of 0.1 after five boosting rounds and ahead after five hundred. So the
pruner is asked at the end of every fit (fit k of one trial against fit k of the others,
on the same rows), and within a fit only for epochs of the trainer past the first quarter of
its epochs (and past ``PRUNE_FROM_EPOCH``): never on the rounds of a tree model, whose
count early stopping decides.
"""

from __future__ import annotations

import math
from typing import Any

from modelmill.training import Callback
from modelmill.training.callbacks import LoopState

FIT_STRIDE = 100_000  # steps reserved per fit: fit k's epoch e is step k * FIT_STRIDE + e
FIT_END = FIT_STRIDE - 1  # and its end, step k * FIT_STRIDE + FIT_END
PRUNE_FROM_EPOCH = 5


def reported(epoch: int) -> bool:
    """Which epochs are reported: each of the first ten, then every 25th. A tree model's
    thousands of rounds would otherwise cost a database write each; every trial reports
    the same steps, so the pruner compares like with like."""
    return 0 < epoch <= 10 or epoch % 25 == 0


class TrialPruning(Callback):
    """Reports ``valid_<metric>`` to ``trial`` and raises ``pruned`` (Optuna's
    ``TrialPruned``) when the trial should stop."""

    def __init__(self, trial: Any, metric: str, pruned: type[Exception]) -> None:
        self.trial, self.key, self.pruned = trial, f"valid_{metric}", pruned
        self.fits = -1
        self.total = 0  # the fit's epochs; 0 for a learner's rounds (as many as early stopping wants)
        self.last_step: int | None = None
        self.pending = ""  # why the trial is pruned, raised when its next fit starts

    def on_train_start(self, state: LoopState, total_epochs: int) -> None:
        if self.pending:  # the last fit ended behind the others: the fits still to come are spared
            raise self.pruned(self.pending)
        self.fits += 1
        self.total = total_epochs

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        value = row.get(self.key)
        epoch = int(row.get("epoch", state.epoch))
        if value is None or not math.isfinite(value) or not reported(epoch):
            return
        ask = self.total > 0 and epoch >= max(PRUNE_FROM_EPOCH, self.total // 4)
        message = self._report(float(value), epoch, ask, f"epoch {epoch}")
        if message:
            raise self.pruned(message)

    def on_train_end(self, state: LoopState) -> None:
        """A fit that ends behind the others prunes the trial when its next fit starts: a
        trial whose last fit this was completes with its score (nothing is left to spare)."""
        if state.best_value is not None and math.isfinite(state.best_value):
            self.pending = self._report(float(state.best_value), FIT_END, True, "its end")

    def _report(self, value: float, step_in_fit: int, ask: bool, where: str) -> str:
        step = max(self.fits, 0) * FIT_STRIDE + step_in_fit
        self.trial.report(value, step)
        self.last_step = step
        if ask and self.trial.should_prune():
            return f"pruned after fit {max(self.fits, 0) + 1}, {where}: {self.key} {value:.4f}"
        return ""
