"""The training loop shared by every torch model.

The trainer owns devices, threads, seeds, determinism and checkpoints; models stay plain
``nn.Module``s. Data is held in memory as tensors and batched by index, so there is no
per-row Python work in the loop.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from modelmill.config.schema import TrainingConfig
from modelmill.errors import ModelError
from modelmill.training.callbacks import Callback, EarlyStopping, LoopState, ProgressBar, TimeBudget
from modelmill.training.checkpoint import load_checkpoint, save_checkpoint
from modelmill.training.optim import OPTIMIZERS, SCHEDULERS, Schedule
from modelmill.training.runtime import pick_device, set_threads

Scorer = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
CHECKPOINT_NAME = "last.safetensors"


@dataclass
class TensorData:
    """Transformed inputs (one tensor per feature, rows first) and the target."""

    inputs: list[torch.Tensor]
    target: torch.Tensor

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def take(self, index: torch.Tensor | slice) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [x[index] for x in self.inputs], self.target[index]

    def to(self, device: torch.device) -> TensorData:
        return TensorData([x.to(device) for x in self.inputs], self.target.to(device))


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_value: float | None
    epochs_run: int
    seconds: float
    stop_reason: str


class Trainer:
    """Fits a module with the loss of the target and keeps the best epoch's weights."""

    def __init__(
        self,
        config: TrainingConfig,
        *,
        loss: nn.Module,
        scorer: Scorer,
        monitor: str,
        mode: Literal["max", "min"],
        checkpoint_dir: Path | None = None,
        callbacks: list[Callback] | None = None,
    ) -> None:
        self.config = config
        self.loss = loss
        self.scorer = scorer
        self.checkpoint_path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir else None
        self.batch_size = 1
        stopping = config.early_stopping
        self.stopper = EarlyStopping(monitor, mode, stopping.patience, stopping.min_delta)
        self.callbacks: list[Callback] = list(callbacks or [])
        if stopping.enabled:
            self.callbacks.append(self.stopper)
        if config.time_budget:
            self.callbacks.append(TimeBudget(config.time_budget))
        if config.progress:
            self.callbacks.append(ProgressBar(monitor))

    # ------------------------------------------------------------------ the loop

    def fit(self, model: nn.Module, train: TensorData, valid: TensorData, *, resume: bool = False) -> TrainResult:
        config = self.config
        set_threads(config.threads)
        torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
        device = pick_device(config.device)
        model.to(device)
        self.loss.to(device)
        train, valid = train.to(device), valid.to(device)
        self.batch_size = resolve_batch_size(config.batch_size, len(train))
        steps = self._steps_per_epoch(len(train))
        optimizer = OPTIMIZERS.get(config.optimizer.type)(config.optimizer, model.parameters())
        schedule = SCHEDULERS.get(config.scheduler.type)(config.scheduler, optimizer, config.epochs, steps)
        state, best = LoopState(), copy.deepcopy(model.state_dict())
        if resume and self.checkpoint_path and self.checkpoint_path.exists():
            state, best = self._restore(model, optimizer, schedule)
        for callback in self.callbacks:
            callback.on_train_start(state, config.epochs)
        while state.epoch < config.epochs and not state.stop_reason:
            started = time.perf_counter()
            train_loss = self._train_epoch(model, train, optimizer, schedule, state.epoch)
            row = self._validate(model, valid, state.epoch, train_loss)
            if schedule and schedule.step == "epoch":
                schedule.scheduler.step()
            elif schedule and schedule.step == "metric":
                schedule.scheduler.step(row["valid_loss"])
            state.elapsed += time.perf_counter() - started
            row["seconds"] = state.elapsed
            best = self._track_best(model, state, row, best)
            for callback in self.callbacks:
                callback.on_epoch_end(state, row)
            if self.checkpoint_path:
                self._save(model, optimizer, schedule, state, best)
        for callback in self.callbacks:
            callback.on_train_end(state)
        model.load_state_dict(best)
        model.to("cpu")
        return TrainResult(state.history, state.best_epoch, state.best_value, state.epoch,
                           state.elapsed, state.stop_reason or "all epochs done")

    def _steps_per_epoch(self, rows: int) -> int:
        full, rest = divmod(rows, self.batch_size)
        return full + (1 if rest >= 2 else 0)  # a last batch of one row would break batch norm

    def _train_epoch(
        self, model: nn.Module, data: TensorData, optimizer: torch.optim.Optimizer,
        schedule: Schedule | None, epoch: int,
    ) -> float:
        # Every epoch draws from its own seed, so a resumed run replays exactly what an
        # uninterrupted one would have done, with no RNG state to save.
        torch.manual_seed(self.config.seed * 100_003 + epoch)
        order = torch.randperm(len(data), device=data.target.device)
        model.train()
        total, count = 0.0, 0
        size = self.batch_size
        for step in range(self._steps_per_epoch(len(data))):
            inputs, target = data.take(order[step * size:(step + 1) * size])
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss(model(inputs), target) + self._penalty(model)
            loss.backward()  # type: ignore[no-untyped-call]
            if self.config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
            optimizer.step()
            if schedule and schedule.step == "batch":
                schedule.scheduler.step()
            total += float(loss.detach()) * len(target)
            count += len(target)
        return total / max(count, 1)

    def _penalty(self, model: nn.Module) -> torch.Tensor:
        """L1 and L2 on the weight matrices (not biases or norm scales)."""
        zero = torch.zeros(())
        if not (self.config.l1 or self.config.l2):
            return zero
        weights = [p for name, p in model.named_parameters() if p.dim() > 1]
        l1 = sum((p.abs().sum() for p in weights), zero) * self.config.l1
        l2 = sum((p.pow(2).sum() for p in weights), zero) * self.config.l2
        return l1 + l2

    @torch.no_grad()
    def _validate(self, model: nn.Module, data: TensorData, epoch: int, train_loss: float) -> dict[str, float]:
        raw = predict_raw(model, data.inputs)
        row = {"epoch": float(epoch + 1), "train_loss": train_loss,
               "valid_loss": float(self.loss(raw, data.target))}
        row.update({f"valid_{k}": v for k, v in self.scorer(raw, data.target).items()})
        return row

    def _track_best(self, model: nn.Module, state: LoopState, row: dict[str, float],
                    best: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state.epoch += 1
        state.history.append(row)
        value = row.get(f"valid_{self.stopper.metric}", float("nan"))
        if self.stopper.improved(state, value):
            state.best_value, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            return copy.deepcopy(model.state_dict())
        state.bad_epochs += 1
        return best

    # ------------------------------------------------------------ checkpoints

    def _save(self, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule | None,
              state: LoopState, best: dict[str, torch.Tensor]) -> None:
        if self.checkpoint_path is None:
            return
        save_checkpoint(self.checkpoint_path, {
            "model": model.state_dict(), "best": best, "optimizer": optimizer.state_dict(),
            "scheduler": schedule.scheduler.state_dict() if schedule else None, "loop": asdict(state),
        })

    def _restore(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 schedule: Schedule | None) -> tuple[LoopState, dict[str, torch.Tensor]]:
        if self.checkpoint_path is None:
            raise ModelError("cannot resume: this run keeps no checkpoints")
        parts = load_checkpoint(self.checkpoint_path)
        model.load_state_dict(parts["model"])
        optimizer.load_state_dict(parts["optimizer"])
        if schedule and parts["scheduler"] is not None:
            schedule.scheduler.load_state_dict(parts["scheduler"])
        return LoopState(**parts["loop"]), parts["best"]


def resolve_batch_size(setting: int | str, rows: int) -> int:
    """``auto``: rows / 32 rounded down to a power of two, clamped to 16..256."""
    if isinstance(setting, int):
        return setting
    if rows < 32 * 16:
        return 16
    return min(256, 2 ** int(math.log2(rows / 32)))


@torch.no_grad()
def predict_raw(model: nn.Module, inputs: list[torch.Tensor], batch_size: int = 8192) -> torch.Tensor:
    """Raw outputs (rows, outputs) in eval mode, in chunks to bound memory."""
    model.eval()
    rows = int(inputs[0].shape[0]) if inputs else 0
    chunks = [model([x[i:i + batch_size] for x in inputs]) for i in range(0, rows, batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0)
