"""The training loop (prepare / epoch / step), its backends, optimisers, schedulers,
callbacks, checkpoints, and the fitting of learners with their own solver."""

from modelmill.models import TensorData, TrainResult
from modelmill.training.backends import BACKENDS, Backend
from modelmill.training.callbacks import Callback, LoopState
from modelmill.training.learners import fit_learner
from modelmill.training.trainer import Trainer, TrainingRun

__all__ = ["BACKENDS", "Backend", "Callback", "LoopState", "TensorData", "TrainResult", "Trainer", "TrainingRun",
           "fit_learner"]
