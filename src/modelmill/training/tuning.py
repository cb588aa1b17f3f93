"""Encoders with pretrained weights, as the trainer treats them through their
:class:`~modelmill.encoders.tuning.Tuning` plan: frozen ones run once per data set (their
outputs cached), warm-up ones wait while the head trains alone, and each learns at its own
rate."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from modelmill.encoders.tuning import TunableEncoder
from modelmill.errors import ModelError
from modelmill.models import TabularNet, TensorData, predict_raw
from modelmill.training.embedding_cache import cached_encoding


def input_encoders(model: nn.Module) -> list[nn.Module]:
    """The per-input encoders of a model that can take their outputs precomputed (a
    ``TabularNet``); none for any other module."""
    return list(model.encoders) if isinstance(model, TabularNet) else []


def frozen_encoders(model: nn.Module) -> list[int]:
    """Positions of the inputs whose encoder is frozen."""
    return [i for i, encoder in enumerate(input_encoders(model))
            if isinstance(encoder, TunableEncoder) and encoder.tuning.frozen]


def warm_up_encoders(model: nn.Module) -> list[TunableEncoder]:
    """The encoders that ask the head to train alone first (``head_epochs``)."""
    return [e for e in input_encoders(model)
            if isinstance(e, TunableEncoder) and e.tuning.head_epochs and not e.tuning.frozen]


def parameter_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """The trainable weights, grouped by learning rate: a tunable encoder learns at
    ``lr × tuning.lr_scale``, the rest at ``lr``."""
    scale: dict[int, float] = {}
    for module in model.modules():
        if isinstance(module, TunableEncoder):
            scale.update({id(p): float(module.tuning.lr_scale) for p in module.parameters()})
    groups: dict[float, list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups.setdefault(scale.get(id(parameter), 1.0), []).append(parameter)
    if not groups:
        raise ModelError("the model has nothing to train: every weight is frozen")
    return [{"params": params, "lr": lr * factor} for factor, params in sorted(groups.items(), reverse=True)]


class _Encode(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.encoder(inputs[0])  # type: ignore[no-any-return]


def cache_frozen(model: nn.Module, data: TensorData, positions: list[int], *, persist: bool = True) -> TensorData:
    """The data with each frozen encoder's input replaced by its output, computed once (kept in
    the disk cache across runs unless ``persist=False``: an encrypted run's)."""
    inputs = list(data.inputs)
    encoders = input_encoders(model)
    for i in positions:
        lengths = data.lengths if inputs[i].dtype == torch.int64 and inputs[i].dim() == 2 else None
        encoder, x = encoders[i], inputs[i]
        inputs[i] = cached_encoding(encoder, x, lambda: predict_raw(_Encode(encoder), [x], batch_size=256,
                                                                     lengths=lengths), persist=persist)
    return TensorData(inputs, data.target, data.lengths)
