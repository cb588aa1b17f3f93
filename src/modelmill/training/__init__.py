"""The training loop, optimisers, schedulers, callbacks and checkpoints."""

from modelmill.training.predict import predict_raw
from modelmill.training.trainer import TensorData, Trainer, TrainResult

__all__ = ["TensorData", "TrainResult", "Trainer", "predict_raw"]
