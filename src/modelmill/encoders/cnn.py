"""The CNN encoder of image features, built layer by layer from the config, with the
input scaling and the training-time augmentation as its first modules (so they run on
whole batches, and augmentation is off whenever the model is in eval mode)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelmill.config.images import AugmentConfig, ConvLayer, DropoutLayer, FlattenLayer, GlobalPoolLayer, PoolLayer
from modelmill.errors import ConfigError
from modelmill.registry import Registry

LAYERS: Registry[Callable[[Any, int], tuple[nn.Module, int]]] = Registry("image layer type")
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU,
    "none": nn.Identity,
}


@LAYERS.register("conv")
def _conv(layer: ConvLayer, channels: int) -> tuple[nn.Module, int]:
    named = {"valid": 0, "same": layer.kernel // 2}
    padding = layer.padding if isinstance(layer.padding, int) else named[layer.padding]
    modules: list[nn.Module] = [nn.Conv2d(channels, layer.filters, layer.kernel, layer.stride, padding,
                                          bias=not layer.batch_norm)]
    if layer.batch_norm:
        modules.append(nn.BatchNorm2d(layer.filters))
    modules.append(_ACTIVATIONS[layer.activation]())
    return nn.Sequential(*modules), layer.filters


@LAYERS.register("pool")
def _pool(layer: PoolLayer, channels: int) -> tuple[nn.Module, int]:
    stride = layer.stride or layer.size
    pool = nn.MaxPool2d(layer.size, stride) if layer.kind == "max" else nn.AvgPool2d(layer.size, stride)
    return pool, channels


@LAYERS.register("dropout")
def _dropout(layer: DropoutLayer, channels: int) -> tuple[nn.Module, int]:
    return nn.Dropout(layer.rate), channels


@LAYERS.register("flatten")
def _flatten(layer: FlattenLayer, channels: int) -> tuple[nn.Module, int]:
    return nn.Flatten(), channels


@LAYERS.register("global_pool")
def _global_pool(layer: GlobalPoolLayer, channels: int) -> tuple[nn.Module, int]:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), channels


class ScalePixels(nn.Module):
    """uint8 (batch, c, h, w) → float, normalised with the fitted per-channel statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inverse_std", 1 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.channels_last = channels_last
        self.mean: torch.Tensor
        self.inverse_std: torch.Tensor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) * self.inverse_std  # (batch, c, h, w)
        # the layout is set either way: stacked (h, w, c) arrays arrive channels-last already
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


class Augment(nn.Module):
    """Random affine (rotation, scale, shift, crop), flips, brightness and contrast, drawn
    per image from torch's generator (seeded per epoch by the trainer). Identity in eval mode."""

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.config.active:
            return x
        c, batch = self.config, x.shape[0]

        def uniform(limit: float) -> torch.Tensor:  # (batch,) in [-limit, limit]
            return (torch.rand(batch, device=x.device) * 2 - 1) * limit

        angle = uniform(math.radians(c.rotation))
        zoom = 1 + uniform(c.scale)
        size = max(x.shape[-2:])
        shift_x = uniform(c.shift * 2) + uniform(2 * c.crop / size)
        shift_y = uniform(c.shift * 2) + uniform(2 * c.crop / size)
        flip = torch.where(torch.rand(batch, device=x.device) < 0.5, -1.0, 1.0) if c.flip \
            else torch.ones(batch, device=x.device)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, shift_x], 1),
                             torch.stack([sin * flip, cos, shift_y], 1)], 1)  # (batch, 2, 3)
        if c.rotation or c.scale or c.shift or c.crop or c.flip:
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
        if c.brightness or c.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (1 + uniform(c.contrast).view(-1, 1, 1, 1)) + mean
            x = x + uniform(c.brightness).view(-1, 1, 1, 1) * x.std(dim=(1, 2, 3), keepdim=True)
        return x


def initialise_convs(module: nn.Module, scheme: str) -> None:
    """Conv weights by ``scheme`` (biases zero); ``torch`` keeps PyTorch's default."""
    if not isinstance(module, nn.Conv2d) or scheme == "torch":
        return
    if scheme == "xavier":
        nn.init.xavier_uniform_(module.weight)
    else:
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def build_cnn(layers: Sequence[Any], *, channels: int, size: tuple[int, int], mean: Sequence[float],
              std: Sequence[float], augmentation: AugmentConfig, channels_last: bool, init: str = "kaiming",
              where: str = "") -> tuple[nn.Module, int]:
    """The encoder module and its output width (found by passing one blank image through)."""
    modules: list[nn.Module] = [ScalePixels(mean, std, channels_last), Augment(augmentation)]
    width = channels
    for layer in layers:
        module, width = LAYERS.get(layer.type)(layer, width)
        modules.append(module)
    encoder = nn.Sequential(*modules)
    encoder.apply(lambda module: initialise_convs(module, init))
    if channels_last:  # weights too, so every convolution runs in the faster CPU layout
        encoder = encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if not any(isinstance(layer, (FlattenLayer, GlobalPoolLayer)) for layer in layers):
        encoder.append(nn.Flatten())
    try:
        with torch.no_grad():
            encoder.eval()
            out = encoder(torch.zeros(1, channels, *size, dtype=torch.uint8))
            encoder.train()
    except RuntimeError as exc:  # e.g. more pooling than the image has pixels
        raise ConfigError(f"the encoder's layers do not fit {size[0]}x{size[1]} images ({exc}). Fix: "
                          "fewer pool or valid-padded conv layers, or a larger `size`", path=where) from None
    return encoder, int(out.shape[1])
