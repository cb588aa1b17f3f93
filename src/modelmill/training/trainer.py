"""The training loop shared by every torch model, in three steps a backend can drive:
``prepare`` (devices, precision, cached frozen encoders, optimiser, schedule, a resumed
state), ``epoch`` (the steps of one pass, validation, the best weights, callbacks and the
checkpoint) and ``step`` (one optimiser step on one batch).

The trainer owns devices, threads, seeds, determinism and checkpoints; models stay plain
``nn.Module``s. Data is held in memory as tensors and batched by index, so there is no
per-row Python work in the loop. Process-wide settings it changes are restored afterwards.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from modelmill.config.schema import TrainingConfig
from modelmill.encoders.tuning import TunableEncoder, held_frozen
from modelmill.errors import ModelError
from modelmill.models import TabularNet, TensorData, TrainResult, predict_raw
from modelmill.training.averaging import WeightAverage
from modelmill.training.batches import BatchSampler, ShuffledBatches, batches, resolve_batch_size, steps_per_epoch
from modelmill.training.callbacks import Callback, EarlyStopping, LoopState, ProgressBar, TimeBudget
from modelmill.training.checkpoint import load_checkpoint, save_checkpoint
from modelmill.training.optim import OPTIMIZERS, SCHEDULERS, Schedule
from modelmill.training.runtime import autocast, keep_freed_memory, pick_device, process_settings, resolve_precision
from modelmill.training.streams import ShardStream
from modelmill.training.tuning import cache_frozen, frozen_encoders, parameter_groups, warm_up_encoders

Scorer = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
CHECKPOINT_NAME = "last.safetensors"
log = logging.getLogger("modelmill")


@dataclass
class TrainingRun:
    """One pass of the loop over ``epochs``: what ``prepare`` sets up and ``epoch`` advances.
    A callback's ``on_prepare`` may wrap ``model`` and ``optimizer`` or swap the ``sampler``
    (differential privacy needs all three). Rows streamed from the cluster (``ShardStream``)
    come in their own order: the sampler is not used."""

    model: nn.Module
    train: TensorData | ShardStream
    valid: TensorData
    optimizer: torch.optim.Optimizer
    schedule: Schedule | None
    sampler: BatchSampler
    state: LoopState
    best: dict[str, torch.Tensor]
    epochs: int
    frozen: list[int]
    checkpoint: Path | None
    prepare_seconds: float
    batch_size: int = 1  # rows per step (the expected rows, for a sampler that draws them at random)
    average: WeightAverage | None = None  # training.ema: the weights validated, kept and saved

    @property
    def finished(self) -> bool:
        return self.state.epoch >= self.epochs or bool(self.state.stop_reason)


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
        sampler: BatchSampler | None = None,
        checkpoint_key: bytes | None = None,
        persist_cache: bool = True,
    ) -> None:
        self.config = config
        self.loss = loss
        self.scorer = scorer
        self.monitor, self.mode = monitor, mode
        self.checkpoint_path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir else None
        self.checkpoint_key = checkpoint_key  # an encrypted run's: its checkpoints are sealed
        # an encrypted run's (with or without checkpoints) writes no embeddings of its rows to disk
        self.persist_cache = persist_cache and checkpoint_key is None
        self.sampler = sampler or ShuffledBatches(config.seed)
        self.batch_size = 1
        self.device = torch.device("cpu")
        self.precision: torch.dtype | None = None  # the training forward's autocast dtype (fit sets it)
        stopping = config.early_stopping
        self.stopper = EarlyStopping(monitor, mode, stopping.patience, stopping.min_delta)
        self.callbacks: list[Callback] = list(callbacks or [])
        if stopping.enabled:
            self.callbacks.append(self.stopper)
        if config.time_budget:
            self.callbacks.append(TimeBudget(config.time_budget))
        if config.progress:
            self.callbacks.append(ProgressBar(monitor))

    # ------------------------------------------------------------------ whole fit

    def fit(self, model: nn.Module, train: TensorData, valid: TensorData, *, resume: bool = False) -> TrainResult:
        """Train ``model`` in place; its best epoch's weights are kept."""
        config = self.config
        with process_settings(config.threads, config.deterministic):
            keep_freed_memory()
            self.device = pick_device(config.device)
            self.precision = resolve_precision(config.precision, self.device)
            model.to(self.device)
            self.loss.to(self.device)
            train, valid = train.to(self.device), valid.to(self.device)
            self.batch_size = resolve_batch_size(config.batch_size, len(train))
            resuming = resume and self.checkpoint_path is not None and self.checkpoint_path.exists()
            warm = [] if resuming else warm_up_encoders(model)
            started = time.perf_counter()
            if warm:
                self._warm_up_head(model, train, valid, warm)
            warm_seconds = time.perf_counter() - started
            run = self.prepare(model, train, valid, epochs=config.epochs, resume=resuming,
                               checkpoint=self.checkpoint_path)
            run.prepare_seconds += warm_seconds
            while not run.finished:
                self.epoch(run)
            result = self.finish(run)
            model.to("cpu")
            return result

    def _warm_up_head(self, model: nn.Module, train: TensorData, valid: TensorData,
                      warm: list[TunableEncoder]) -> None:
        """Encoders that ask for ``head_epochs`` are first held frozen while the rest of the
        model trains on their cached outputs; tuning them then starts from a head that
        already fits (linear probing, then fine-tuning: Kumar et al., 2022), so the first
        steps do not push a random head's gradients into the pretrained weights."""
        epochs = max(encoder.tuning.head_epochs for encoder in warm)
        log.info(f"training the head alone for {epochs} epochs before tuning the encoder")
        with held_frozen(warm):
            run = self.prepare(model, train, valid, epochs=epochs, resume=False, checkpoint=None, phase="head")
            while not run.finished:
                self.epoch(run)
            self.finish(run)

    # ---------------------------------------------------------------- the steps

    def prepare(self, model: nn.Module, train: TensorData | ShardStream, valid: TensorData, *, epochs: int,
                resume: bool, checkpoint: Path | None, phase: str = "train") -> TrainingRun:
        """Everything before the first epoch: frozen encoders run once over the data, the
        optimiser and schedule built, a checkpoint's state restored; then ``on_prepare``.
        ``train`` streamed from the cluster is taken in the order it comes: no sampler, no cache."""
        started = time.perf_counter()
        frozen = frozen_encoders(model)
        if frozen and isinstance(train, ShardStream):
            raise ModelError("frozen encoders cache their outputs over all training rows, which a stream from "
                             "the cluster never holds (data.shards takes no text or image features)")
        if frozen and isinstance(model, TabularNet) and isinstance(train, TensorData):  # once per data set
            train = cache_frozen(model, train, frozen, persist=self.persist_cache)
            valid = cache_frozen(model, valid, frozen, persist=self.persist_cache)
            model.use_cached(frozen)
        prepare_seconds = time.perf_counter() - started
        optimizer = OPTIMIZERS.get(self.config.optimizer.type)(
            self.config.optimizer, parameter_groups(model, self.config.optimizer.lr))
        schedule = SCHEDULERS.get(self.config.scheduler.type)(
            self.config.scheduler, optimizer, epochs, steps_per_epoch(len(train), self.batch_size))
        run = TrainingRun(model, train, valid, optimizer, schedule, self.sampler, LoopState(phase=phase),
                          copy.deepcopy(model.state_dict()), epochs, frozen, checkpoint, prepare_seconds,
                          self.batch_size)
        restored_average = self._restore(run) if resume else None
        if self.config.ema is not None:  # from the restored weights, or the checkpoint's own average
            run.average = WeightAverage(run.model, self.config.ema)
            if restored_average is not None:
                run.average.load_state_dict(restored_average)
        for callback in self.callbacks:
            callback.on_prepare(run)
        for callback in self.callbacks:
            callback.on_train_start(run.state, epochs)
        return run

    def epoch(self, run: TrainingRun) -> dict[str, float]:
        """One pass over the training rows, then validation, the schedule, the best weights,
        the callbacks and the checkpoint. Returns the epoch's history row."""
        state = run.state
        started = time.perf_counter()
        if isinstance(run.train, ShardStream):  # rows streamed from the cluster, in the order they arrive
            pairs = run.train.batches(state.epoch, self.batch_size)
        else:
            pairs = batches(run.train, run.sampler(run.train, state.epoch, self.batch_size),
                            self.config.loader_workers)
        run.model.train()
        total, count = 0.0, 0
        for inputs, target in pairs:
            loss = self.step(run, inputs, target)
            total += loss * len(target)
            count += len(target)
        with run.average.applied() if run.average else nullcontext():  # the weights validated and kept
            row = self._validate(run, total / max(count, 1))
            if run.schedule and run.schedule.step == "epoch":
                run.schedule.scheduler.step()
            elif run.schedule and run.schedule.step == "metric":
                run.schedule.scheduler.step(row["valid_loss"])
            state.elapsed += time.perf_counter() - started
            row["seconds"] = state.elapsed
            self._track_best(run, row)
        for callback in self.callbacks:
            callback.on_epoch_end(state, row)
        if run.checkpoint:
            self._save(run)
        return row

    def step(self, run: TrainingRun, inputs: list[torch.Tensor], target: torch.Tensor) -> float:
        """One optimiser step on one batch; returns the batch's loss."""
        if not len(target):  # a sampler drawing rows at random (Poisson) may draw none: the step still counts
            return self._empty_step(run)
        device = self.device
        inputs = [x.to(device, non_blocking=True) for x in inputs]
        target = target.to(device, non_blocking=True)
        run.optimizer.zero_grad(set_to_none=True)
        with autocast(device, self.precision):
            raw = run.model(inputs)
        loss = self.loss(raw.float(), target) + self._penalty(run.model)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(run.model.parameters(), self.config.grad_clip)
        run.optimizer.step()
        if run.average:
            run.average.update()
        if run.schedule and run.schedule.step == "batch":
            run.schedule.scheduler.step()
        return float(loss.detach())

    def finish(self, run: TrainingRun) -> TrainResult:
        """After the last epoch: callbacks told, cached encoders restored, best weights back."""
        state = run.state
        for callback in self.callbacks:
            callback.on_train_end(state)
        if run.frozen and isinstance(run.model, TabularNet):
            run.model.use_cached([])
        run.model.load_state_dict(run.best)
        return TrainResult(state.history, state.best_epoch, state.best_value, state.epoch,
                           state.elapsed, state.stop_reason or "all epochs done", run.prepare_seconds)

    # ---------------------------------------------------------------- helpers

    def _empty_step(self, run: TrainingRun) -> float:
        """An optimiser step on no rows: nothing to run forward. A plain optimiser changes nothing
        (no weight has a gradient); a DP-SGD one adds its noise, as the privacy analysis of
        Poisson sampling assumes of every step (Opacus does the same for an empty batch)."""
        run.optimizer.zero_grad(set_to_none=True)
        run.optimizer.step()
        if run.average:
            run.average.update()
        if run.schedule and run.schedule.step == "batch":
            run.schedule.scheduler.step()
        return 0.0

    def _penalty(self, model: nn.Module) -> torch.Tensor:
        """L1 and L2 on the weight matrices (not biases or norm scales)."""
        zero = torch.zeros(())
        if not (self.config.l1 or self.config.l2):
            return zero
        weights = [p for p in model.parameters() if p.dim() > 1 and p.requires_grad]
        l1 = sum((p.abs().sum() for p in weights), zero) * self.config.l1
        l2 = sum((p.pow(2).sum() for p in weights), zero) * self.config.l2
        return l1 + l2

    @torch.no_grad()
    def _validate(self, run: TrainingRun, train_loss: float) -> dict[str, float]:
        data = run.valid
        raw = predict_raw(run.model, data.inputs, lengths=data.lengths)
        row = {"epoch": float(run.state.epoch + 1), "train_loss": train_loss,
               "valid_loss": float(self.loss(raw, data.target))}
        row.update({f"valid_{k}": v for k, v in self.scorer(raw, data.target).items()})
        return row

    def _track_best(self, run: TrainingRun, row: dict[str, float]) -> None:
        state = run.state
        state.epoch += 1
        state.history.append(row)
        value = row.get(f"valid_{self.stopper.metric}", float("nan"))
        if self.stopper.improved(state, value):
            state.best_value, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            run.best = copy.deepcopy(run.model.state_dict())
        else:
            state.bad_epochs += 1

    # ------------------------------------------------------------ checkpoints

    def save_checkpoint(self, run: TrainingRun) -> None:
        """Write ``run``'s checkpoint (weights, best weights, optimiser, schedule, loop state) to
        ``run.checkpoint``, in the format ``prepare(resume=True)`` reads; nothing without one."""
        self._save(run)

    def _save(self, run: TrainingRun) -> None:
        if run.checkpoint is None:
            return
        save_checkpoint(run.checkpoint, {
            "model": run.model.state_dict(), "best": run.best, "optimizer": run.optimizer.state_dict(),
            "scheduler": run.schedule.scheduler.state_dict() if run.schedule else None,
            "loop": asdict(run.state), "average": run.average.state_dict() if run.average else None,
        }, key=self.checkpoint_key)

    def _restore(self, run: TrainingRun) -> dict[str, Any] | None:
        """The checkpoint's weights, optimiser, schedule and loop state into ``run``; returns its
        weight average's state (None: it kept none)."""
        if run.checkpoint is None:
            raise ModelError("cannot resume: this run keeps no checkpoints")
        parts = load_checkpoint(run.checkpoint, key=self.checkpoint_key)
        run.model.load_state_dict(parts["model"])
        run.optimizer.load_state_dict(parts["optimizer"])
        if run.schedule and parts["scheduler"] is not None:
            run.schedule.scheduler.load_state_dict(parts["scheduler"])
        run.state, run.best = LoopState(**parts["loop"]), parts["best"]
        average: dict[str, Any] | None = parts.get("average")
        return average
