"""A fitted pipeline built from a bundle: transform, model, postprocess; with a fast path
for a few records. What ``load``, ``predict`` and every server use."""

from modelmill.predictor.output import prediction_columns, prediction_frame, prediction_records
from modelmill.predictor.predictor import FAST_ROWS, Predictor, model_maker
from modelmill.predictor import onnx as _onnx  # noqa: F401  (registers the onnxruntime runtime)
from modelmill.predictor.runtime import RUNTIMES, ModelRuntime, TorchRuntime

__all__ = ["FAST_ROWS", "RUNTIMES", "ModelRuntime", "Predictor", "TorchRuntime", "model_maker",
           "prediction_columns", "prediction_frame", "prediction_records"]
