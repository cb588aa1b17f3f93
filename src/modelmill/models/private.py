"""Modules a differentially private training can take, built the same way for training and for
loading: batch norm replaced by group norm, convolutions in the default memory layout, and layers
that DP-SGD cannot give per-row gradients for refused with the feature that holds them. Plain
torch: loading a private model needs no Opacus."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelmill.encoders.cnn import ScalePixels
from modelmill.errors import ConfigError
from modelmill.features.base import Feature, Target
from modelmill.models.base import Learner, ModelType, TabularNet, TorchModel

GROUPS = 32  # Wu & He (2018), "Group Normalization"; Opacus's ModuleValidator.fix uses the same
_NOT_PER_ROW = (nn.RNNBase, nn.MultiheadAttention)


def group_norms(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced, in place, by a GroupNorm (Opacus's
    ``ModuleValidator.fix``). Batch norm mixes the rows of a batch, so a row's gradient depends on
    the others and cannot be clipped alone; group norm normalises each row by itself. A 2-d or 3-d
    batch norm gets gcd(32, channels) groups, as Opacus does; a 1-d one gets a single group (layer
    norm with a scale per channel): it follows a Linear layer on (batch, channels) rows, where
    Opacus's rule would give groups of one number each, normalised to a constant (the layer would
    pass nothing on). Returns the module (a new one when ``module`` itself is a batch norm)."""
    if isinstance(module, nn.BatchNorm1d):
        return nn.GroupNorm(1, module.num_features, affine=module.affine)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.GroupNorm(math.gcd(GROUPS, module.num_features), module.num_features, affine=module.affine)
    for name, child in module.named_children():
        replaced = group_norms(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


def out_of_place(module: nn.Module) -> None:
    """In-place activations (``nn.ReLU(inplace=True)``, the CNN's) made out of place: per-row gradient
    hooks hand a layer's output on as a view that autograd forbids modifying in place. Same numbers,
    same weights; only a little more memory."""
    for layer in module.modules():
        if getattr(layer, "inplace", False) is True:  # torch's activations and dropout share this flag
            setattr(layer, "inplace", False)


def contiguous_layout(module: nn.Module) -> None:
    """The image encoder's convolutions back in PyTorch's default memory layout (it runs them
    channels-last, a CPU speed-up). Opacus's per-row gradients of a convolution whose input is
    channels-last are wrong (Opacus 1.6: its ``unfold2d`` walks the input with the strides of the
    default layout): on a 16-channel input their mean was 99% of the batch gradient's norm away
    from it, so clipping and noise would act on wrong gradients. The images go in in the default
    layout (``ScalePixels``), and so do the weights: channels-last weights make a CPU convolution's
    output, the next one's input, channels-last. The same function in the forward; only slower
    on a CPU."""
    for layer in module.modules():
        if isinstance(layer, ScalePixels):  # it hands the images on channels-last otherwise
            layer.channels_last = False
    module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def refuse_unsupported(module: nn.Module, features: Sequence[Feature[Any]]) -> None:
    """Raise a ConfigError naming the feature whose encoder holds a recurrent or attention layer
    (Opacus needs its own re-implementations of those, which serving would then need too)."""
    encoders = list(module.encoders) if isinstance(module, TabularNet) else []
    for feature, encoder in zip(features, encoders):
        found = next((m for m in encoder.modules() if isinstance(m, _NOT_PER_ROW)), None)
        if found is not None:
            raise ConfigError(
                f"feature {feature.name!r}: its encoder ({type(encoder).__name__}) has an {type(found).__name__} "
                "layer, which differentially private training cannot give per-row gradients for. Fix: for a "
                "text column use encoder type cnn or bag, or turn training.privacy off", path="training.privacy")
    found = next((m for m in module.modules() if isinstance(m, _NOT_PER_ROW)), None)
    if found is not None:
        raise ConfigError(f"the model has an {type(found).__name__} layer, which differentially private training "
                          "cannot give per-row gradients for. Fix: turn training.privacy off", path="training.privacy")


class DPCompatible(TorchModel[Any]):
    """A torch model type whose modules are built for differentially private training (and so
    rebuilt identically when its bundle is loaded): everything else is the wrapped type's."""

    def __init__(self, inner: ModelType[Any]) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.view = inner.view

    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        module = group_norms(self.inner.build(features, target))
        refuse_unsupported(module, features)
        out_of_place(module)
        contiguous_layout(module)
        return module

    @property
    def refits(self) -> bool:
        return self.inner.refits

    def check(self, features: Sequence[Feature[Any]]) -> None:
        self.inner.check(features)

    def trained_parameters(self, module: nn.Module) -> int:
        return self.inner.trained_parameters(module)

    def save(self, module: nn.Module) -> dict[str, bytes]:
        return self.inner.save(module)

    def load(self, module: nn.Module, artifacts: Mapping[str, bytes], *, where: Path) -> None:
        self.inner.load(module, artifacts, where=where)


def private_model(maker: ModelType[Any], model_type: str) -> DPCompatible:
    """``maker`` building DP-compatible modules; a ConfigError at ``training.privacy`` for a
    model type that the shared torch trainer does not fit (DP-SGD is a way of training it)."""
    if isinstance(maker, TorchModel):
        return DPCompatible(maker)
    if isinstance(maker, Learner):
        why = "is a learner with its own solver (not trained by gradient steps of the shared torch trainer)"
    else:
        why = ("fits several candidates, learners among them (gbdt, tfidf_logistic) that DP-SGD does not "
               "apply to, several times on folds of the same rows, and each fit would spend a budget of its own")
    raise ConfigError(f"differential privacy (DP-SGD) trains torch model types only; model type {model_type!r} "
                      f"{why}. Fix: set model.type to mlp or linear, or remove training.privacy",
                      path="training.privacy")
