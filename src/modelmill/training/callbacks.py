"""Callbacks: cross-cutting work around the loop (progress, early stopping, budgets)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from modelmill.training.trainer import TrainingRun


@dataclass
class LoopState:
    """Everything the loop needs to continue after a restart, as plain data."""

    epoch: int = 0
    elapsed: float = 0.0
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str = ""
    phase: str = "train"  # "head": the head trains alone before a pretrained encoder is tuned


class Callback:
    """Hooks of the loop; each returns nothing, and sets ``state.stop_reason`` to stop.

    Pass your own to ``Pipeline(config, callbacks=[...])``; they run after the built-in ones
    are created (early stopping, time budget, progress) and before them in each hook.
    """

    def on_prepare(self, run: TrainingRun) -> None:
        """Before the first epoch; may wrap ``run.model`` and ``run.optimizer`` or replace
        ``run.sampler`` (the batches of each epoch)."""

    def on_train_start(self, state: LoopState, total_epochs: int) -> None:
        pass

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        pass

    def on_train_end(self, state: LoopState) -> None:
        pass


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without improvement of the monitored metric."""

    def __init__(self, metric: str, mode: Literal["max", "min"], patience: int, min_delta: float) -> None:
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta

    def improved(self, state: LoopState, value: float) -> bool:
        if math.isnan(value):
            return False
        if state.best_value is None:
            return True
        gain = value - state.best_value if self.mode == "max" else state.best_value - value
        return gain > self.min_delta

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        if state.bad_epochs >= self.patience:
            state.stop_reason = f"early stopping: no better {self.metric} for {self.patience} epochs"


class TimeBudget(Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        if state.elapsed >= self.seconds:
            state.stop_reason = f"time budget of {self.seconds:g} s reached"


class ProgressBar(Callback):
    """A rich progress bar over epochs with the live losses and the watched metric; where
    the console is not a terminal (CI, a log file), one plain line per epoch instead."""

    def __init__(self, metric: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        # dict.fromkeys: once each, where the monitored metric is the loss itself (valid_loss)
        self.keys = list(dict.fromkeys(["train_loss", "valid_loss", f"valid_{metric}"]))
        self.progress = Progress(
            TextColumn("[bold]epoch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"), console=self.console, transient=False,
        )
        self.task: Any = None
        self.total = 0

    def _metrics(self, row: dict[str, float]) -> str:
        return "  ".join(f"{k}={row[k]:.4g}" for k in self.keys if k in row)

    def on_train_start(self, state: LoopState, total_epochs: int) -> None:
        self.total = total_epochs
        if self.console.is_terminal:
            self.progress.start()
            self.task = self.progress.add_task("train", total=total_epochs, completed=state.epoch, metrics="")

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=state.epoch, metrics=self._metrics(row))
        else:
            self.console.print(f"epoch {state.epoch}/{self.total}  {self._metrics(row)}", highlight=False)

    def on_train_end(self, state: LoopState) -> None:
        if self.task is not None:
            self.progress.stop()
