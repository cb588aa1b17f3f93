"""Multi-layer perceptron over the concatenated feature encodings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import nn

from modelmill.config.models import MLPModelConfig
from modelmill.features.base import Feature, Target
from modelmill.models.base import MODELS, TabularNet, TorchModel

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
}


def initialise(module: nn.Module, scheme: str, activation: str) -> None:
    """Weight init of every Linear layer; biases start at zero (``torch``: PyTorch's own init of
    weights and biases, as a freshly built nn.Linear has them)."""
    if not isinstance(module, nn.Linear):
        return
    if scheme == "torch":
        module.reset_parameters()
        return
    nonlinearity: Literal["relu", "tanh", "sigmoid"] = (
        "relu" if activation in ("relu", "gelu") else "tanh" if activation == "tanh" else "sigmoid"
    )
    if scheme == "gaussian":
        nn.init.normal_(module.weight, std=0.01)
    elif scheme == "xavier":
        nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain(nonlinearity))
    elif scheme == "kaiming":
        nn.init.kaiming_uniform_(module.weight, nonlinearity="relu" if nonlinearity == "relu" else "linear")
    else:
        nn.init.zeros_(module.weight)
    nn.init.zeros_(module.bias)


@MODELS.register("mlp", config=MLPModelConfig)
class MLPModel(TorchModel[MLPModelConfig]):
    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        config = self.config
        width = sum(f.output_dim for f in features)
        layers: list[nn.Module] = []
        for size in config.hidden:
            layers.append(nn.Linear(width, size))
            if config.batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
            width = size
        body = nn.Sequential(*layers)
        head = nn.Linear(width, target.output_size)
        for module in (*body, head):
            initialise(module, config.init, config.activation)
        return TabularNet([f.encoder() for f in features], body, head)
