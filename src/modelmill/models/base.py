"""The model contract.

Every model type is registered in ``MODELS`` under its YAML ``type:`` name, bound to its
config class. A torch model type implements :class:`TorchModel`: it builds a plain
``nn.Module`` from the fitted input features and the target, and the shared trainer does
the rest. A learner with its own fitting procedure (a convex solver, trees) implements
:class:`Learner`: it builds a module of the right shapes and fits it itself, seeing the
validation split too (for early stopping).

Either way the fitted state goes into the bundle as artefacts of the model type's own
choosing (``save``/``load``): safetensors of the module's tensors by default, or a file in
its library's own non-pickle format (LightGBM's text model, say).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import torch
from torch import nn

from modelmill.bundle import WEIGHTS, encode_weights, parse_weights
from modelmill.config.schema import TrainingConfig
from modelmill.errors import BundleError
from modelmill.features.base import Feature, Target
from modelmill.models.fit import TensorData, TrainResult
from modelmill.registry import Registry

ConfigT = TypeVar("ConfigT")
InputView = Literal["encoded", "raw", "both"]


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


class ModelType(ABC, Generic[ConfigT]):
    """What every model type does: build its module, and save and load the fitted state."""

    view: InputView = "encoded"
    """What the module takes per feature: ``encoded`` (``Feature.transform``), ``raw``
    (``Feature.raw_view``: codes and numbers, as trees want them), or ``both`` (the encoded
    tensors, then the raw ones: an ensemble of members that take either)."""

    runtime: ClassVar[str] = "torch"
    """What runs the fitted module for predictions (a name in the predictor's runtimes)."""

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abstractmethod
    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        """A fresh module taking the features' tensors and giving (batch, target.output_size)."""

    @property
    def refits(self) -> bool:
        """Whether the kept model finally learns from the validation rows too (a learner that
        picks its size on them, then fits again on every row): the features are then fitted
        on those rows as well, so no value the model learns from is unknown to them."""
        return False

    def check(self, features: Sequence[Feature[Any]]) -> None:
        """Raise a ConfigError for features this model type cannot take; called with the
        unfitted features before any data is read (and again by ``build``)."""

    def trained_parameters(self, module: nn.Module) -> int:
        """How many numbers fitting learned from the data (frozen pretrained weights excluded)."""
        return sum(p.numel() for p in module.parameters() if p.requires_grad)

    def submodels(self, module: nn.Module) -> dict[str, tuple[ModelType[Any], nn.Module]]:
        """Fitted models inside this one that the bundle keeps as models of their own (an
        ensemble's members), by name; ``load`` finds their artefacts under
        ``models/<name>/``."""
        return {}

    def save(self, module: nn.Module) -> dict[str, bytes]:
        """The fitted state as bundle artefacts (name → bytes); never a pickle."""
        return {WEIGHTS: encode_weights(module.state_dict())}

    def load(self, module: nn.Module, artifacts: Mapping[str, bytes], *, where: Path) -> None:
        """Put the state ``save`` gave back into a freshly built module."""
        if WEIGHTS not in artifacts:
            raise BundleError(f"bundle {where} has no {WEIGHTS} for its model")
        module.load_state_dict(parse_weights(artifacts[WEIGHTS], where=where / WEIGHTS))


class TorchModel(ModelType[ConfigT]):
    """A model type trained by the shared trainer."""


class Learner(ModelType[ConfigT]):
    """A model type with its own fitting procedure instead of the shared trainer (a convex
    solver, trees). Its module is still what predicts, so prediction, bundles and serving
    are the same as for any model."""

    @abstractmethod
    def fit(self, module: nn.Module, train: TensorData, valid: TensorData, target: Target[Any],
            training: TrainingConfig, *, on_round: RoundHook | None = None) -> TrainResult:
        """Fit the module in place on the transformed training tensors (``train.target`` is
        the transformed target; ``target`` the fitted target, with its class weights), using
        ``valid`` as it sees fit (early stopping); ``training`` gives the seed and threads.
        The history it returns holds what the learner itself knows (iterations, seconds, its
        own validation curve); the caller adds the losses and validation metrics of the
        fitted module to the row of its best iteration. A learner that fits in rounds hands
        ``on_round`` each round's row as it goes (``epoch``, ``valid_loss``, validation
        metrics): the training callbacks see it like an epoch, and may stop the fit by raising."""


ModelTypeClass = type[ModelType[Any]]
RoundHook = Callable[[dict[str, float]], None]
"""What a learner calls after each round of its fit with that round's history row."""
MODELS: Registry[ModelTypeClass] = Registry("model type")
