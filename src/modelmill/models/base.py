"""The model contract.

Every model type is registered in ``MODELS`` under its YAML ``type:`` name. A torch model
type implements :class:`TorchModel`: it builds a plain ``nn.Module`` from the fitted input
features and the target, and the shared trainer does the rest. A learner that is not
fitted otherwise (a convex solver, say) implements :class:`Learner`: it builds the same
kind of module and fits it itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from modelmill.features.base import Feature, Target
from modelmill.registry import Registry

ConfigT = TypeVar("ConfigT")


class TabularNet(nn.Module):
    """Feature encoders side by side, then a body and an output layer.

    Inputs arrive as a list in the order of the configured features.
    """

    def __init__(self, encoders: Sequence[nn.Module], body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.body = body
        self.head = head
        self.cached: set[int] = set()

    def use_cached(self, positions: list[int]) -> None:
        """Inputs at these positions arrive already encoded (a frozen encoder's output,
        computed once by the trainer); an empty list restores the normal path."""
        self.cached = set(positions)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        encoded = [x if i in self.cached else encoder(x)
                   for i, (encoder, x) in enumerate(zip(self.encoders, inputs, strict=True))]
        x = torch.cat(encoded, dim=1)  # (batch, sum of feature widths)
        return self.head(self.body(x))  # type: ignore[no-any-return]  # (batch, outputs)


class TorchModel(ABC, Generic[ConfigT]):
    """A model type trained by the shared trainer."""

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abstractmethod
    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        """A fresh, initialised module taking the features' tensors, giving (batch, target.output_size)."""


class Learner(ABC, Generic[ConfigT]):
    """A model type with its own fitting procedure instead of the shared trainer (a convex
    solver, say). It still builds a plain ``nn.Module`` — its fitted numbers held as buffers
    — so prediction, saving and serving are the same as for any model."""

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abstractmethod
    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        """An unfitted module of the right shapes (so a bundle's weights load into it)."""

    @abstractmethod
    def fit(self, module: nn.Module, inputs: list[torch.Tensor], codes: torch.Tensor, target: Target[Any]) -> None:
        """Fit the module in place on the transformed training tensors; ``codes`` is the
        transformed target and ``target`` the fitted target (its class weights, say)."""


ModelType = type[TorchModel[Any]] | type[Learner[Any]]
MODELS: Registry[ModelType] = Registry("model type")
