"""The training loop shared by every torch model.

The trainer owns devices, threads, seeds, determinism and checkpoints; models stay plain
``nn.Module``s. Data is held in memory as tensors and batched by index, so there is no
per-row Python work in the loop.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from modelmill.config.schema import TrainingConfig
from modelmill.data.image_stream import is_lazy
from modelmill.errors import ModelError
from modelmill.training.callbacks import Callback, EarlyStopping, LoopState, ProgressBar, TimeBudget
from modelmill.training.embedding_cache import cached_encoding
from modelmill.training.checkpoint import load_checkpoint, save_checkpoint
from modelmill.training.optim import OPTIMIZERS, SCHEDULERS, Schedule
from modelmill.training.predict import predict_raw
from modelmill.training.runtime import (autocast, keep_freed_memory, pick_device, resolve_precision,
                                        set_deterministic, set_threads)

Scorer = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
CHECKPOINT_NAME = "last.safetensors"
log = logging.getLogger("modelmill")


@dataclass
class TensorData:
    """Transformed inputs (one tensor per feature, rows first) and the target; ``lengths``
    (tokens per row) when some input is a sequence."""

    inputs: list[torch.Tensor]
    target: torch.Tensor
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def take(self, index: torch.Tensor | slice) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [x[index] for x in self.inputs], self.target[index]

    def to(self, device: torch.device) -> TensorData:
        return TensorData([x.to(device) for x in self.inputs], self.target.to(device),
                          None if self.lengths is None else self.lengths.to(device))


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_value: float | None
    epochs_run: int
    seconds: float  # of the epochs
    stop_reason: str
    prepare_seconds: float = 0.0  # before the first epoch: frozen encoders run over the data


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
        self.monitor, self.mode = monitor, mode
        self.checkpoint_path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir else None
        self.batch_size = 1
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

    # ------------------------------------------------------------------ the loop

    def fit(self, model: nn.Module, train: TensorData, valid: TensorData, *, resume: bool = False) -> TrainResult:
        config = self.config
        set_threads(config.threads)
        set_deterministic(config.deterministic)
        keep_freed_memory()
        device = pick_device(config.device)
        self.precision = resolve_precision(config.precision, device)
        model.to(device)
        self.loss.to(device)
        train, valid = train.to(device), valid.to(device)
        self.batch_size = resolve_batch_size(config.batch_size, len(train))
        prepare_started = time.perf_counter()
        if not (resume and self.checkpoint_path and self.checkpoint_path.exists()):
            self._warm_heads(model, train, valid)
        frozen = frozen_encoders(model)
        if frozen:  # frozen encoders run once per data set, not once per epoch
            train, valid = cache_frozen(model, train, frozen), cache_frozen(model, valid, frozen)
            model.use_cached(frozen)  # type: ignore[operator]
        prepare_seconds = time.perf_counter() - prepare_started
        steps = self._steps_per_epoch(len(train))
        optimizer = OPTIMIZERS.get(config.optimizer.type)(config.optimizer, parameter_groups(model, config.optimizer.lr))
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
        if frozen:
            model.use_cached([])  # type: ignore[operator]
        model.load_state_dict(best)
        model.to("cpu")
        return TrainResult(state.history, state.best_epoch, state.best_value, state.epoch,
                           state.elapsed, state.stop_reason or "all epochs done", prepare_seconds)

    def _warm_heads(self, model: nn.Module, train: TensorData, valid: TensorData) -> None:
        """Encoders that ask for ``head_epochs`` are first held frozen while the rest of the
        model trains on their cached outputs; tuning them then starts from a head that
        already fits (linear probing, then fine-tuning: Kumar et al., 2022), so the first
        steps do not push a random head's gradients into the pretrained weights."""
        warm = [e for e in input_encoders(model) if getattr(e, "head_epochs", 0) and not getattr(e, "frozen", False)]
        if not warm:
            return
        flags = {id(p): p.requires_grad for e in warm for p in e.parameters()}
        for encoder in warm:
            setattr(encoder, "frozen", True)  # the mark the trainer reads (PretrainedTextEncoder)
            encoder.requires_grad_(False)
        try:
            epochs = max(int(getattr(e, "head_epochs")) for e in warm)
            config = self.config.model_copy(update={"epochs": epochs})
            log.info(f"training the head alone for {epochs} epochs before tuning the encoder")
            Trainer(config, loss=self.loss, scorer=self.scorer, monitor=self.monitor,
                    mode=self.mode).fit(model, train, valid)
        finally:
            for encoder in warm:
                setattr(encoder, "frozen", False)
                for parameter in encoder.parameters():
                    parameter.requires_grad_(flags[id(parameter)])
        model.to(train.target.device)

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
        if data.lengths is not None:
            order = bucket_by_length(order, data.lengths, self.batch_size)
        model.train()
        total, count = 0.0, 0
        size = self.batch_size
        batches = [order[step * size:(step + 1) * size] for step in range(self._steps_per_epoch(len(data)))]
        device = data.target.device
        for inputs, target in self._batches(data, batches):
            inputs = [x.to(device, non_blocking=True) for x in inputs]
            target = target.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, self.precision):
                raw = model(inputs)
            loss = self.loss(raw.float(), target) + self._penalty(model)
            loss.backward()  # type: ignore[no-untyped-call]
            if self.config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
            optimizer.step()
            if schedule and schedule.step == "batch":
                schedule.scheduler.step()
            total += float(loss.detach()) * len(target)
            count += len(target)
        return total / max(count, 1)

    def _batches(self, data: TensorData, batches: list[torch.Tensor]) -> Iterator[tuple[list[torch.Tensor],
                                                                                           torch.Tensor]]:
        """The batches in order: taken from the tensors, or, when some input streams (images
        decoded on demand), decoded by loader workers a few batches ahead of the loop."""
        if not any(is_lazy(x) for x in data.inputs):
            return (data.take(index) for index in batches)
        workers = self.config.loader_workers
        loader: DataLoader[Batch] = DataLoader(_Batches(data, [b.cpu() for b in batches]), batch_size=None, shuffle=False,
                            num_workers=workers, prefetch_factor=4 if workers else None,
                            pin_memory=data.target.device.type == "cuda")
        return iter(loader)

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
    def _validate(self, model: nn.Module, data: TensorData, epoch: int, train_loss: float) -> dict[str, float]:
        raw = predict_raw(model, data.inputs, lengths=data.lengths)
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


def parameter_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """The trainable weights, grouped by learning rate: a module with an ``lr_scale`` (a
    pretrained encoder) learns at ``lr × lr_scale``, the rest at ``lr``."""
    scale: dict[int, float] = {}
    for module in model.modules():
        factor = getattr(module, "lr_scale", None)
        if factor is not None:
            scale.update({id(p): float(factor) for p in module.parameters()})
    groups: dict[float, list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups.setdefault(scale.get(id(parameter), 1.0), []).append(parameter)
    if not groups:
        raise ModelError("the model has nothing to train: every weight is frozen")
    return [{"params": params, "lr": lr * factor} for factor, params in sorted(groups.items(), reverse=True)]


def input_encoders(model: nn.Module) -> list[nn.Module]:
    """The per-input encoders of a model that can take their outputs precomputed (a
    ``TabularNet``); none for any other module."""
    encoders = getattr(model, "encoders", None)
    if encoders is None or not hasattr(model, "use_cached"):
        return []
    return list(encoders)


def frozen_encoders(model: nn.Module) -> list[int]:
    """Positions of the inputs whose encoder is frozen (marked ``frozen``)."""
    return [i for i, encoder in enumerate(input_encoders(model)) if getattr(encoder, "frozen", False)]


class _Encode(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.encoder(inputs[0])  # type: ignore[no-any-return]


def cache_frozen(model: nn.Module, data: TensorData, positions: list[int]) -> TensorData:
    """The data with each frozen encoder's input replaced by its output, computed once."""
    inputs = list(data.inputs)
    encoders = input_encoders(model)
    for i in positions:
        lengths = data.lengths if inputs[i].dtype == torch.int64 and inputs[i].dim() == 2 else None
        encoder, x = encoders[i], inputs[i]
        inputs[i] = cached_encoding(encoder, x, lambda: predict_raw(_Encode(encoder), [x], batch_size=256,
                                                                     lengths=lengths))
    return TensorData(inputs, data.target, data.lengths)


Batch = tuple[list[torch.Tensor], torch.Tensor]


class _Batches(Dataset[Batch]):
    """Batch ``i`` of an epoch, for a DataLoader whose workers decode streamed inputs."""

    def __init__(self, data: TensorData, batches: list[torch.Tensor]) -> None:
        self.data = TensorData([x if is_lazy(x) else x.cpu() for x in data.inputs], data.target.cpu())
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.data.take(self.batches[i])


def resolve_batch_size(setting: int | str, rows: int) -> int:
    """``auto``: rows / 32 rounded down to a power of two, clamped to 16..256."""
    if isinstance(setting, int):
        return setting
    if rows < 32 * 16:
        return 16
    return min(256, 2 ** int(math.log2(rows / 32)))


def bucket_by_length(order: torch.Tensor, lengths: torch.Tensor, batch_size: int, pool: int = 50) -> torch.Tensor:
    """A shuffled order whose batches hold rows of similar length: each run of ``pool``
    batches is sorted by length and cut into batches, and the batches are shuffled. Encoders
    trim the padding shared by a whole batch, so this cuts the padded work several-fold."""
    pieces: list[torch.Tensor] = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        pieces.extend(torch.split(chunk, batch_size))
    shuffled = torch.randperm(len(pieces)).tolist()
    return torch.cat([pieces[i] for i in shuffled]) if pieces else order
