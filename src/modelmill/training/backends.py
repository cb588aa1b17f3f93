"""Training backends: what drives the trainer's prepare / epoch / step. ``local`` runs them
in this process; ``ray`` (Ray Train, :mod:`modelmill.training.ray_backend`) drives the same
epoch and step code on the workers of a cluster."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from modelmill.errors import ConfigError
from modelmill.models import TensorData, TrainResult
from modelmill.registry import Registry
from modelmill.training.ray_backend import RayBackend
from modelmill.training.streams import StreamedRows
from modelmill.training.trainer import Trainer


class Backend(Protocol):
    def fit(self, trainer: Trainer, model: nn.Module, train: TensorData | StreamedRows, valid: TensorData, *,
            resume: bool) -> TrainResult: ...


class LocalBackend:
    """The trainer's own loop, in this process."""

    def fit(self, trainer: Trainer, model: nn.Module, train: TensorData | StreamedRows, valid: TensorData, *,
            resume: bool) -> TrainResult:
        if isinstance(train, StreamedRows):
            raise ConfigError("rows in shards (data.shards) stream to Ray Train's workers: they train with "
                              "training.backend: ray only", path="training.backend")
        return trainer.fit(model, train, valid, resume=resume)


BACKENDS: Registry[type[Backend]] = Registry("training backend")
BACKENDS.add("local", LocalBackend)
BACKENDS.add("ray", RayBackend)  # Ray Train's TorchTrainer; Ray itself is imported only when it fits
