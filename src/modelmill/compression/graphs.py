"""A fitted model as an ONNX graph (the contract of :mod:`modelmill.predictor.onnx`), and the
check that the graph computes what the model computes.

Torch models go through PyTorch's exporter on ``torch.export`` (``dynamo=True``): the
TorchScript exporter is deprecated, and ONNX Runtime's quantiser works on the new
exporter's graphs since its 1.2x releases. Model types with their own exporter (LightGBM's
trees through onnxmltools) register it in ``GRAPH_WRITERS`` under their type name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from modelmill.errors import ModelError
from modelmill.predictor import Predictor
from modelmill.predictor.onnx import OUTPUT, OnnxRuntime, input_name, session
from modelmill.registry import Registry

TOLERANCE = 1e-4  # largest |ONNX − PyTorch| allowed on a raw output (plus 1e-4 of its size)
OPSET = 18

GraphWriter = Callable[[Predictor, list[torch.Tensor]], bytes]
GRAPH_WRITERS: Registry[GraphWriter] = Registry("ONNX exporter")
"""Model types that are exported otherwise than through PyTorch's exporter, by type name."""


class _Positional(nn.Module):
    """The model with one argument per input tensor: what the exporter traces (it names
    each argument as a graph input)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(list(inputs))  # type: ignore[no-any-return]


def to_onnx(predictor: Predictor, sample: list[torch.Tensor]) -> bytes:
    """The predictor's model as ONNX bytes, traced on ``sample`` (the model's input tensors
    for a few rows; at least two, so that no batch size of one is taken for a constant)."""
    model_type = predictor.config.model.type
    if model_type in GRAPH_WRITERS:
        return GRAPH_WRITERS.get(model_type)(predictor, sample)
    exporter()
    if predictor.maker.view != "encoded" or predictor.runtime.name != "torch":
        raise ModelError(f"model type {model_type!r} cannot be exported to ONNX (its model is not a torch module "
                         "over the encoded features)")
    sequences = _sequence_inputs(predictor, sample)
    try:
        return torch_to_onnx(predictor.model, sample, sequences=sequences)
    except ModelError as exc:
        if not sequences:
            raise
        texts = ", ".join(repr(predictor.features[i].name) for i in sorted(sequences))
        raise ModelError(f"{exc}. The model reads tokens of {texts}: their bag and cnn encoders export, while "
                         "encoders that trim their padding by the data (transformer and rnn, for example) cannot be "
                         "traced with a varying length. Fix: serve this model on torch, or train it with "
                         "encoder bag or cnn") from None


def exporter() -> None:
    """Fail clearly when the packages the export needs are missing."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript")):  # onnxscript: the exporter's
        raise ModelError("exporting to ONNX needs the onnx and onnxscript packages, which are not installed. Fix: "
                         "pip install 'modelmill[onnx]'") from None


def _sequence_inputs(predictor: Predictor, sample: Sequence[torch.Tensor]) -> set[int]:
    """Positions of token inputs, whose second dimension (the length) varies too."""
    return {i for i, (feature, x) in enumerate(zip(predictor.features, sample))
            if feature.sequence_lengths(x) is not None}


def torch_to_onnx(model: nn.Module, sample: list[torch.Tensor], *, sequences: set[int] = frozenset()) -> bytes:  # type: ignore[assignment]
    was_training = model.training
    model.eval()
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1)
    shapes = tuple({0: batch, 1: length} if i in sequences else {0: batch} for i in range(len(sample)))
    names = [input_name(i) for i in range(len(sample))]
    quiet = logging.getLogger("torch")  # the exporter and torch.export log graphs and guards on failure
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_Positional(model), tuple(sample), dynamo=True, input_names=names,
                                        output_names=[OUTPUT], dynamic_shapes=(shapes,), opset_version=OPSET,
                                        external_data=False)
        if program is None:
            raise ModelError("PyTorch's ONNX exporter returned no graph")
        graph = program.model_proto
        for node in graph.graph.node:  # the exporter keeps each node's Python stack trace: a third of a small graph
            del node.metadata_props[:]
        return graph.SerializeToString()  # type: ignore[no-any-return]
    except ModelError:
        raise
    except Exception as exc:  # the exporter raises many kinds; the user needs what failed, not its stack
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ModelError(f"PyTorch's exporter could not turn this model into ONNX: "
                         f"{' '.join(str(cause).split())[:500]}") from None
    finally:
        quiet.setLevel(level)
        model.train(was_training)


@dataclass(frozen=True)
class GraphCheck:
    """How closely a graph's outputs follow the model's on the same rows: every output
    within ``tolerance`` plus ``tolerance`` of its size (numpy's ``isclose``)."""

    rows: int
    max_abs_diff: float
    passed: bool
    tolerance: float = TOLERANCE

    def as_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                "passed": self.passed}


def check_graph(graph: bytes, predictor: Predictor, inputs: list[torch.Tensor]) -> GraphCheck:
    """Run ``graph`` on ONNX Runtime and the predictor's model on the same input tensors."""
    expected = predictor.runtime.raw(inputs, predictor.lengths(inputs)).double().numpy()
    got = OnnxRuntime(session(graph)).raw(inputs, None).double().numpy()
    if got.shape != expected.shape:
        raise ModelError(f"the ONNX graph gives outputs of shape {got.shape}, the model {expected.shape}")
    close = np.isclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True)
    finite = np.isfinite(got) & np.isfinite(expected)
    worst = float(np.abs(got - expected)[finite].max()) if finite.any() else 0.0
    return GraphCheck(len(expected), worst, bool(close.all()))


def graph_inputs(predictor: Predictor, sample: Sequence[torch.Tensor]) -> list[dict[str, Any]]:
    """What each graph input is: its name, the feature it comes from, how it is made
    (``transform``: the feature's encoding; ``raw_view``: its raw codes and numbers), its
    type and its shape past the batch dimension (what a consumer in another language feeds)."""
    view = predictor.maker.view
    made = ["transform"] * len(predictor.features) if view == "encoded" else \
        ["raw_view"] * len(predictor.features) if view == "raw" else \
        ["transform"] * len(predictor.features) + ["raw_view"] * len(predictor.features)
    features = [f.name for f in predictor.features] * (2 if view == "both" else 1)
    return [{"name": input_name(i), "feature": feature, "made_by": how, "dtype": str(x.dtype).removeprefix("torch."),
             "shape": ["batch", *(["length"] if i in _sequence_inputs(predictor, sample) else []),
                       *list(x.shape[2 if i in _sequence_inputs(predictor, sample) else 1:])]}
            for i, (feature, how, x) in enumerate(zip(features, made, sample))]


def _trees(predictor: Predictor, sample: list[torch.Tensor]) -> bytes:
    from modelmill.compression.trees import trees_to_onnx  # onnxmltools and LightGBM: only for trees

    return trees_to_onnx(predictor)


GRAPH_WRITERS.add("gbdt", _trees)
