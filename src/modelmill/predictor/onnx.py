"""ONNX Runtime as a model runtime: a bundle model whose artefact is an ONNX graph
(``modelmill export``, or an int8 graph from ``modelmill compress``) predicts through it.

The graph's contract (what ``modelmill.compression.graphs`` writes, and what a consumer in
another language feeds): one input per model input tensor, named ``input_0``, ``input_1``,
… in the order the predictor makes them (the features' encoded tensors in the config's
order; for a model that takes the raw view, the raw tensors), the batch dimension dynamic;
one output, ``raw``, the model's raw outputs (rows, outputs) before the target's
postprocessing (a logit, class scores, a standardised number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelmill.data.image_stream import is_lazy
from modelmill.errors import BundleError, ModelError
from modelmill.features.base import Feature, Target
from modelmill.models.base import ModelType
from modelmill.models.inference import IMAGE_CHUNK_VALUES, TOKENS_PER_CHUNK
from modelmill.predictor.runtime import RUNTIMES, ModelRuntime

GRAPH = "model.onnx"  # the artefact name of an ONNX graph in a bundle model
OUTPUT = "raw"
ROWS_PER_RUN = 8192  # rows per session run: bounds the memory of the activations

# ONNX tensor types → numpy, for the types our inputs come in
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8,
                "tensor(float16)": np.float16}


def input_name(position: int) -> str:
    return f"input_{position}"


def onnxruntime() -> Any:
    """The onnxruntime module, or a clear error saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("running an ONNX graph needs ONNX Runtime, which is not installed. Fix: pip install "
                         "'modelmill[onnx]' (or pip install onnxruntime)") from None
    return ort


def session(graph: bytes, *, threads: int | None = None, where: Path | str = "the graph") -> Any:
    """An ONNX Runtime session on the CPU, with the threads torch uses in this process (a
    server sets them per worker)."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers mean nothing to a user
    # Its worker threads would spin after each run, taking the cores from the feature
    # transforms and the server's event loop that come next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own types for a damaged or unsupported graph
        raise BundleError(f"{where} cannot be loaded by ONNX Runtime: {' '.join(str(exc).split())[:400]}") from None


class OnnxRuntime:
    """An ONNX graph run by ONNX Runtime, in bounded chunks of rows."""

    name = "onnxruntime"

    def __init__(self, sess: Any, *, where: Path | str = "the graph") -> None:
        self.session = sess
        inputs = sess.get_inputs()
        self.input_names = [i.name for i in inputs]
        expected = [input_name(i) for i in range(len(inputs))]
        if sorted(self.input_names) != sorted(expected):
            raise BundleError(f"{where}: the graph's inputs are {self.input_names}; a modelmill graph takes "
                              f"{expected}")
        order = {name: i for i, name in enumerate(self.input_names)}
        self.types = [_NUMPY_TYPES.get(inputs[order[name]].type, np.float32) for name in expected]
        self.input_names = expected

    def raw(self, inputs: list[torch.Tensor], lengths: torch.Tensor | None) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise ModelError(f"the ONNX graph takes {len(self.input_names)} inputs and was given {len(inputs)}: "
                             "it belongs to another model")
        rows = int(inputs[0].shape[0]) if inputs else 0
        if rows == 0:
            return torch.empty(0)
        step = ROWS_PER_RUN
        images = [x for x in inputs if is_lazy(x) or x.dim() >= 4]  # a lazy column is decoded as it is sliced
        if images:  # as the torch runtime: activations of a few hundred pictures at a time stay in cache
            per_row = sum(math.prod(x.shape[1:]) for x in images)
            step = max(16, min(step, IMAGE_CHUNK_VALUES // max(per_row, 1)))
        if lengths is not None:  # tokens: chunks of a bounded number of them, as on torch (the graph
            # sees the padded width, so that bounds the chunk)
            width = max((int(x.shape[1]) for x in inputs
                         if not is_lazy(x) and x.dim() == 2 and not x.is_floating_point()), default=1)
            step = max(1, min(step, TOKENS_PER_CHUNK // max(width, 1)))
        if rows <= step and not images:  # a few records: no slicing and no copy
            return torch.from_numpy(self._run(inputs))
        return torch.from_numpy(np.concatenate([self._run([x[i:i + step] for x in inputs])
                                                for i in range(0, rows, step)]))

    def _run(self, inputs: Sequence[torch.Tensor]) -> np.ndarray:
        feeds = {name: _array(x, kind) for name, x, kind in zip(self.input_names, inputs, self.types)}
        out: np.ndarray = self.session.run([OUTPUT], feeds)[0]
        return out


def _array(x: torch.Tensor, kind: Any) -> np.ndarray:
    array = x.numpy()
    return array if array.dtype == kind else array.astype(kind)


@RUNTIMES.register("onnxruntime")
def load_onnx(maker: ModelType[Any], features: Sequence[Feature[Any]], target: Target[Any],
              artifacts: Mapping[str, bytes], where: Path) -> ModelRuntime:
    if GRAPH not in artifacts:
        raise BundleError(f"bundle {where} has no {GRAPH} for its ONNX model")
    return OnnxRuntime(session(artifacts[GRAPH], where=where / GRAPH), where=where / GRAPH)
