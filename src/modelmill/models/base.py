"""The model contract.

Every model type is registered in ``MODELS`` under its YAML ``type:`` name. A torch model
type implements :class:`TorchModel`: it builds a plain ``nn.Module`` from the fitted input
features and the target, and the shared trainer does the rest. A learner that is not
trained by gradient descent (gradient-boosted trees, say) implements :class:`Learner`
instead — fit on arrays, predict raw outputs, state as tensors + JSON — and the pipeline
calls it through the same four verbs.
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

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        encoded = [encoder(x) for encoder, x in zip(self.encoders, inputs, strict=True)]
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
    """A model type with its own fitting procedure (not gradient descent by our trainer)."""

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abstractmethod
    def fit(self, inputs: list[torch.Tensor], target: torch.Tensor, valid: tuple[list[torch.Tensor], torch.Tensor]) -> None:
        """Fit on the transformed training tensors."""

    @abstractmethod
    def predict_raw(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Raw outputs (rows, target.output_size), as a torch model would give."""

    @abstractmethod
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (saved as safetensors) and plain JSON."""

    @abstractmethod
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore from what ``state`` returned."""


ModelType = type[TorchModel[Any]] | type[Learner[Any]]
MODELS: Registry[ModelType] = Registry("model type")
