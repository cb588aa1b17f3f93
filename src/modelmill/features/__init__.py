"""Feature types: one module each, registered by their YAML ``type:`` name."""

from modelmill.features import binary, category, date, image, number, text  # noqa: F401  (registration)
from modelmill.features.base import FEATURES, TARGETS, Feature, Predictions, Target

__all__ = ["FEATURES", "TARGETS", "Feature", "Predictions", "Target"]
