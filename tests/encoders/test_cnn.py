"""The CNN encoder's layers as the config spells them: numeric padding, overlapping pools,
tanh, and the defaults that existing configs rely on."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from modelmill.config.images import AugmentConfig, ConvLayer, FlattenLayer, PoolLayer, default_layers
from modelmill.config.io import parse_config
from modelmill.encoders.cnn import build_cnn
from modelmill.errors import ConfigError


def build(layers: list[Any], size: int = 28) -> tuple[nn.Module, int]:
    return build_cnn(layers, channels=1, size=(size, size), mean=[0.0], std=[1.0], augmentation=AugmentConfig(),
                     channels_last=False, init="torch")


def modules_of(encoder: nn.Module, kind: type[nn.Module]) -> list[Any]:
    return [m for m in encoder.modules() if isinstance(m, kind)]


def test_opacus_sample_convnet_is_spelled_layer_by_layer() -> None:
    # Opacus examples/mnist.py: conv 16@8x8/2 pad 3 → 14x14, max-pool 2/1 → 13x13,
    # conv 32@4x4/2 → 5x5, max-pool 2/1 → 4x4, flatten → 512
    layers: list[Any] = [ConvLayer(filters=16, kernel=8, stride=2, padding=3), PoolLayer(size=2, stride=1),
                         ConvLayer(filters=32, kernel=4, stride=2), PoolLayer(size=2, stride=1), FlattenLayer()]
    encoder, width = build(layers)
    assert width == 32 * 4 * 4
    conv1, conv2 = modules_of(encoder, nn.Conv2d)
    assert conv1.padding == (3, 3) and conv2.padding == (0, 0)
    assert [(p.kernel_size, p.stride) for p in modules_of(encoder, nn.MaxPool2d)] == [(2, 1), (2, 1)]
    out = encoder(torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8))
    assert out.shape == (3, 512)  # (batch, channels·h·w)


def test_numeric_padding_and_pool_stride_change_the_output_size() -> None:
    _, valid = build([ConvLayer(filters=4, kernel=8, stride=2), FlattenLayer()])
    _, padded = build([ConvLayer(filters=4, kernel=8, stride=2, padding=3), FlattenLayer()])
    assert (valid, padded) == (4 * 11 * 11, 4 * 14 * 14)
    _, tiled = build([ConvLayer(filters=4), PoolLayer(size=2), FlattenLayer()])
    _, overlapping = build([ConvLayer(filters=4), PoolLayer(size=2, stride=1), FlattenLayer()])
    assert (tiled, overlapping) == (4 * 13 * 13, 4 * 25 * 25)
    avg, _ = build([ConvLayer(filters=4), PoolLayer(size=3, stride=2, kind="avg"), FlattenLayer()])
    (pool,) = modules_of(avg, nn.AvgPool2d)
    assert (pool.kernel_size, pool.stride) == (3, 2)


def test_tanh_activation() -> None:
    encoder, _ = build([ConvLayer(filters=4, activation="tanh"), FlattenLayer()])
    assert len(modules_of(encoder, nn.Tanh)) == 1 and not modules_of(encoder, nn.ReLU)
    out = encoder(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8))
    assert out.abs().max() <= 1


def test_defaults_are_unchanged() -> None:
    conv, pool = ConvLayer(filters=8), PoolLayer()
    assert (conv.padding, conv.activation, pool.size, pool.stride, pool.kind) == ("valid", "relu", 2, None, "max")
    encoder, width = build(default_layers(), size=32)
    assert width == 128
    assert [(p.kernel_size, p.stride) for p in modules_of(encoder, nn.MaxPool2d)] == [(2, 2), (2, 2)]
    assert [c.padding for c in modules_of(encoder, nn.Conv2d)] == [(1, 1)] * 3
    assert len(modules_of(encoder, nn.ReLU)) == 3


def config_with(layer: dict[str, Any]) -> dict[str, Any]:
    return {"name": "cnn", "data": {"source": "images.csv"}, "target": {"name": "label", "type": "category"},
            "features": [{"name": "image", "type": "image", "encoder": [layer, {"type": "flatten"}]}]}


@pytest.mark.parametrize(("layer", "message"), [
    ({"type": "conv", "filters": 4, "padding": "full"},
     r"features\[0\]\.encoder\[0\]\.padding: got 'full'; valid: valid, same, or a number of pixels from 0 to 16$"),
    ({"type": "conv", "filters": 4, "padding": -1}, r"encoder\[0\]\.padding: got -1; valid: valid, same, or a number"),
    ({"type": "conv", "filters": 4, "activation": "tahn"},
     r"encoder\[0\]\.activation: got 'tahn' \(did you mean 'tanh'\?\); valid: relu, tanh, gelu, silu, none"),
    ({"type": "pool", "stride": 0}, r"encoder\[0\]\.stride: Input should be greater than or equal to 1 \(got 0\)"),
])
def test_bad_layers_are_clear_config_errors(layer: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config_with(layer))


def test_a_pool_larger_than_what_is_left_names_the_fix() -> None:
    layers: list[Any] = [ConvLayer(filters=4, kernel=8, stride=8), PoolLayer(size=4, stride=1)]
    with pytest.raises(ConfigError, match=r"do not fit 28x28 images .* Fix: fewer pool"):
        build(layers)
