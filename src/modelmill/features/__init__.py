"""Feature types: one module each, registered by their YAML ``type:`` name together with
their config class."""

from __future__ import annotations

from typing import Any

from modelmill.config.monitoring import DriftConfig
from modelmill.config.schema import PipelineConfig
from modelmill.features import binary, category, date, image, number, number_target, text  # noqa: F401  (registration)
from modelmill.features.base import (FEATURES, TARGETS, Feature, FitReport, Predictions, RawColumn, Target,
                                     TokenSpace)
from modelmill.features.stats import DriftResult

__all__ = ["FEATURES", "TARGETS", "DriftResult", "DriftConfig", "Feature", "FitReport", "Predictions", "RawColumn", "Target",
           "TokenSpace", "build_features", "build_target", "features_from_state", "target_from_state"]


def build_features(config: PipelineConfig) -> list[Feature[Any]]:
    """The configured input features, unfitted (each one answers for its column already:
    what is missing, unreadable or an outlier in it)."""
    return [FEATURES.get(fc.type, path=f"features[{i}].type")(fc, cleaning=config.cleaning)
            for i, fc in enumerate(config.features)]


def build_target(config: PipelineConfig) -> Target[Any]:
    return TARGETS.get(config.target.type, path="target.type")(config.target)


def features_from_state(config: PipelineConfig, state: dict[str, Any]) -> list[Feature[Any]]:
    """The fitted input features from their saved state (``features.json``)."""
    return [FEATURES.get(fc.type).from_state(fc, state["features"][fc.name]) for fc in config.features]


def target_from_state(config: PipelineConfig, state: dict[str, Any]) -> Target[Any]:
    return TARGETS.get(config.target.type).from_state(config.target, state["target"])
