"""Model types, registered by their YAML ``type:`` name."""

from modelmill.models import linear, mlp, tfidf  # noqa: F401  (registration)
from modelmill.models.base import MODELS, Learner, TabularNet, TorchModel

__all__ = ["MODELS", "Learner", "TabularNet", "TorchModel"]
