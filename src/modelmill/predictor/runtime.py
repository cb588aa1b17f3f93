"""What runs a fitted model for predictions. Torch today; a runtime for an exported graph
(ONNX Runtime, say) registers here and the predictor, ``modelmill predict`` and every
server use it unchanged."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from modelmill.features.base import Feature, Target
from modelmill.models.base import ModelType
from modelmill.models.inference import predict_raw
from modelmill.registry import Registry


class ModelRuntime(Protocol):
    """Runs a fitted model: the features' tensors in, raw outputs (rows, outputs) out."""

    name: str

    def raw(self, inputs: list[torch.Tensor], lengths: torch.Tensor | None) -> torch.Tensor: ...


class TorchRuntime:
    """A torch module, in eval mode, run in bounded chunks."""

    name = "torch"

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def raw(self, inputs: list[torch.Tensor], lengths: torch.Tensor | None) -> torch.Tensor:
        # Inference mode skips autograd's bookkeeping (version counters, views), a sizeable
        # share of a one-record call; the outputs are the same numbers.
        with torch.inference_mode():
            return predict_raw(self.module, inputs, lengths=lengths)


RuntimeLoader = Callable[[ModelType[Any], Sequence[Feature[Any]], Target[Any], Mapping[str, bytes], Path],
                         ModelRuntime]
RUNTIMES: Registry[RuntimeLoader] = Registry("model runtime")
"""How each runtime is made from a model type and the model's bundle artefacts."""


@RUNTIMES.register("torch")
def load_torch(maker: ModelType[Any], features: Sequence[Feature[Any]], target: Target[Any],
               artifacts: Mapping[str, bytes], where: Path) -> ModelRuntime:
    module = maker.build(features, target)
    maker.load(module, artifacts, where=where)
    module.eval()
    return TorchRuntime(module)
