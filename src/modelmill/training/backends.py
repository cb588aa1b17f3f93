"""Training backends: what drives the trainer's prepare / epoch / step. ``local`` runs them
in this process; a cluster backend (Ray Train) registers here and drives the same epoch and
step code on its workers."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from modelmill.models import TensorData, TrainResult
from modelmill.registry import Registry
from modelmill.training.trainer import Trainer


class Backend(Protocol):
    def fit(self, trainer: Trainer, model: nn.Module, train: TensorData, valid: TensorData, *,
            resume: bool) -> TrainResult: ...


class LocalBackend:
    """The trainer's own loop, in this process."""

    def fit(self, trainer: Trainer, model: nn.Module, train: TensorData, valid: TensorData, *,
            resume: bool) -> TrainResult:
        return trainer.fit(model, train, valid, resume=resume)


BACKENDS: Registry[type[Backend]] = Registry("training backend")
BACKENDS.add("local", LocalBackend)
