"""Model types, registered by their YAML ``type:`` name."""

from modelmill.models import ensemble, gbdt, linear, mlp, tfidf  # noqa: F401  (registration)
from modelmill.models.base import MODELS, InputView, Learner, ModelType, TabularNet, TorchModel
from modelmill.models.fit import TensorData, TrainResult
from modelmill.models.inference import predict_raw

__all__ = ["MODELS", "InputView", "Learner", "ModelType", "TabularNet", "TensorData", "TorchModel", "TrainResult",
           "predict_raw"]
