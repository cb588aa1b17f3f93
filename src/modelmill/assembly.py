"""The fitted parts of a pipeline and how they turn frames into tensors and back:
shared by training, prediction, evaluation and (later) serving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.schema import PipelineConfig
from modelmill.features import FEATURES, TARGETS, Feature, Predictions, Target
from modelmill.features.number import NumberFeature
from modelmill.models import MODELS, Learner, TorchModel
from modelmill.training import TensorData, predict_raw


def build_feature(config: Any, pipeline: PipelineConfig) -> Feature[Any]:
    """An unfitted feature for one feature config (number features get the outlier rule)."""
    feature_class = FEATURES.get(config.type)
    if issubclass(feature_class, NumberFeature):
        return feature_class(config, outliers=pipeline.cleaning.outliers)
    return feature_class(config)


def build_model(config: PipelineConfig, features: list[Feature[Any]], target: Target[Any]) -> nn.Module:
    return model_maker(config).build(features, target)


def model_maker(config: PipelineConfig) -> TorchModel[Any] | Learner[Any]:
    """The configured model type: a torch model (the shared trainer fits it) or a learner."""
    return MODELS.get(config.model.type, path="model.type")(config.model)


@dataclass
class FittedParts:
    """Everything fitted: the feature and target states and the model."""

    config: PipelineConfig
    features: list[Feature[Any]]
    target: Target[Any]
    model: nn.Module

    def inputs(self, frame: pd.DataFrame) -> list[torch.Tensor]:
        return [feature.transform(frame[feature.name]) for feature in self.features]

    def lengths(self, inputs: list[torch.Tensor]) -> torch.Tensor | None:
        """Tokens per row over the sequence inputs (None when there is none)."""
        counts = [c for f, x in zip(self.features, inputs) if (c := f.sequence_lengths(x)) is not None]
        return torch.stack(counts).sum(dim=0) if counts else None

    def tensors(self, frame: pd.DataFrame) -> TensorData:
        inputs = self.inputs(frame)
        return TensorData(inputs, self.target.transform(frame[self.target.name]), self.lengths(inputs))

    def raw(self, frame: pd.DataFrame) -> torch.Tensor:
        """The model's raw outputs (rows, outputs) for a frame."""
        inputs = self.inputs(frame)
        return predict_raw(self.model, inputs, lengths=self.lengths(inputs))

    def predict(self, frame: pd.DataFrame) -> Predictions:
        return self.target.postprocess(self.raw(frame))

    def feature_state(self) -> dict[str, Any]:
        return {
            "features": {f.name: f.state() for f in self.features},
            "target": self.target.state(),
        }

    @classmethod
    def from_state(cls, config: PipelineConfig, state: dict[str, Any], weights: dict[str, torch.Tensor]) -> FittedParts:
        features = [
            FEATURES.get(fc.type).from_state(fc, state["features"][fc.name]) for fc in config.features
        ]
        target = TARGETS.get(config.target.type).from_state(config.target, state["target"])
        model = build_model(config, features, target)
        model.load_state_dict(weights)
        model.eval()
        return cls(config, features, target, model)

    def input_schema(self) -> dict[str, Any]:
        """The input columns, their types and allowed values: what a request must carry."""
        columns = []
        for feature in self.features:
            entry: dict[str, Any] = {"name": feature.name, "type": feature.config.type}
            state = feature.state()
            if feature.config.type == "category":
                entry["values"] = state["vocabulary"]
            elif feature.config.type == "binary":
                entry["values"] = [state["negative"], state["positive"]]
            columns.append(entry)
        target = {"name": self.target.name, "type": self.target.task, "classes": self.target.class_names}
        return {"inputs": columns, "target": target}

    def profile(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Reference profile of the training data, for drift monitoring."""
        return {
            "rows": int(len(frame)),
            "features": {f.name: f.profile(frame[f.name]) for f in self.features},
        }


def prediction_columns(target: str, class_names: list[str]) -> tuple[str, list[str]]:
    """The names of the predicted value and of each class's probability, the one naming
    rule of ``modelmill predict``, ``Pipeline.predict`` and the REST service."""
    return f"{target}_predicted", [f"{target}_probability_{name}" for name in class_names]


def prediction_frame(predictions: Predictions, target: str, index: pd.Index) -> pd.DataFrame:
    """Predictions as columns: ``<target>_predicted`` and ``<target>_probability_<class>``."""
    label, probabilities = prediction_columns(target, predictions.class_names)
    columns: dict[str, Any] = {label: predictions.labels}
    if predictions.proba is not None:
        columns.update(zip(probabilities, predictions.proba.T))
    return pd.DataFrame(columns, index=index)


def labelled_rows(frame: pd.DataFrame, target: Target[Any]) -> np.ndarray:
    """Mask of rows whose target is known to the fitted target (for metrics)."""
    codes = target.codes(frame[target.name])
    if target.task == "number":
        return ~np.isnan(codes)
    return np.asarray(codes >= 0)
