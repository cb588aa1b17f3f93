"""Linear, logistic and softmax regression: the target type picks which, through its loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from modelmill.config.models import LinearModelConfig
from modelmill.features.base import Feature, Target
from modelmill.models.base import MODELS, TabularNet, TorchModel


@MODELS.register("linear", config=LinearModelConfig)
class LinearModel(TorchModel[LinearModelConfig]):
    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        width = sum(f.output_dim for f in features)
        head = nn.Linear(width, target.output_size)
        nn.init.zeros_(head.weight)  # a convex problem: zero is a fine start and makes runs repeatable
        nn.init.zeros_(head.bias)
        return TabularNet([f.encoder() for f in features], nn.Identity(), head)
