"""Quantisation: int8 graphs through ONNX Runtime's quantiser, and weights kept in half
precision.

Why ONNX Runtime for int8: ``torch.ao.quantization`` (eager and FX modes) is deprecated
and being removed from PyTorch, and its successor (torchao) targets GPUs and
``torch.compile``; ONNX Runtime's quantiser and its int8 CPU kernels are maintained, work
on graphs from PyTorch's current exporter, and the result is a standard ONNX graph that
any ONNX runtime can run. Linear-heavy models get dynamic int8 (weights int8, activations
quantised per batch: no calibration); models with convolutions get static int8 (activation
ranges calibrated on training rows), because dynamic int8 makes convolutions slower.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from modelmill.bundle import WEIGHTS, encode_weights, parse_weights
from modelmill.errors import ModelError
from modelmill.predictor.onnx import input_name

HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def quantizer() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise ModelError("int8 quantisation needs ONNX Runtime, which is not installed. Fix: pip install "
                         "'modelmill[onnx]'") from None
    return quantization


def dynamic_int8(graph: bytes) -> bytes:
    """int8 weights for the graph's MatMul/Gemm (and embedding Gather) nodes; activations are
    quantised per call."""
    q = quantizer()
    with tempfile.TemporaryDirectory() as folder, _quiet(), _failures("dynamic int8"):
        source, target = Path(folder, "model.onnx"), Path(folder, "int8.onnx")
        source.write_bytes(graph)
        q.quantize_dynamic(source, target, weight_type=q.QuantType.QInt8, per_channel=False)
        return target.read_bytes()


def static_int8(graph: bytes, calibration: Sequence[Sequence[torch.Tensor]]) -> bytes:
    """int8 weights (per output channel) and int8 activations whose ranges were measured on
    ``calibration`` (batches of input tensors, training rows), as QuantizeLinear /
    DequantizeLinear pairs that ONNX Runtime fuses into int8 kernels."""
    q = quantizer()

    class Batches(q.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.batches: Iterator[dict[str, Any]] = iter(
                [{input_name(i): x.numpy() for i, x in enumerate(batch)} for batch in calibration])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as folder, _quiet(), _failures("static int8"):
        source, prepared, target = (Path(folder, name) for name in ("model.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(graph)
        # shapes and fusions the quantiser needs; not the symbolic shape inference (for transformers),
        # which on failure leaves its files in the current folder
        q.shape_inference.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        q.quantize_static(str(prepared), str(target), Batches(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
        return target.read_bytes()


def half_weights(artifacts: Mapping[str, bytes], dtype: str, *, where: Path) -> dict[str, bytes]:
    """The model's floating-point tensors stored in ``dtype`` (half the bytes); loading
    puts them back into the float32 module, so the model computes in float32 with the
    rounded weights.

    Raises:
        ModelError: the weights are not float32 any more (compressed already).
    """
    reduced = reduced_precision(artifacts, where=where)
    if reduced:
        raise ModelError(f"the model's weights are already {', '.join(reduced)}; storing them in {dtype} again "
                         "saves nothing. Fix: compress the float32 bundle it was made from")
    tensors = parse_weights(artifacts[WEIGHTS], where=where / WEIGHTS)
    half = {name: t.to(HALF[dtype]) if t.is_floating_point() else t for name, t in tensors.items()}
    return {**artifacts, WEIGHTS: encode_weights(half)}


def reduced_precision(artifacts: Mapping[str, bytes], *, where: Path) -> list[str]:
    """The floating-point types other than float32 that a model's weights are stored in
    (``float16`` after a half-precision compression); empty for float32 or no weights."""
    if WEIGHTS not in artifacts:
        return []
    tensors = parse_weights(artifacts[WEIGHTS], where=where / WEIGHTS)
    return sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()
                   if t.is_floating_point() and t.dtype != torch.float32})


@contextlib.contextmanager
def _failures(what: str) -> Iterator[None]:
    """ONNX Runtime's quantiser raises plain exceptions for graphs it cannot take: a clear
    error instead of a traceback."""
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"ONNX Runtime's quantiser could not make a {what} graph of this model: "
                         f"{' '.join(str(exc).split())[:300]}. Fix: --int8 dynamic (no calibration), or "
                         "--method bfloat16") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice at WARNING through the root logger, and warns."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
