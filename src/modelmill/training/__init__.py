"""The training loop, optimisers, schedulers, callbacks and checkpoints."""

from modelmill.training.trainer import TensorData, Trainer, TrainResult, predict_raw

__all__ = ["TensorData", "TrainResult", "Trainer", "predict_raw"]
