"""Every registered model builds from fitted features and gives (batch, outputs)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from modelmill.config import parse_config
from modelmill.errors import ConfigError
from modelmill.features import TARGETS, build_features
from modelmill.models import MODELS, Learner
from modelmill.api import Pipeline
from modelmill.predictor import Predictor
from tests.conftest import base_config, make_frame


ENSEMBLES = {"ensemble": {"members": [{"type": "linear"}, {"type": "mlp", "hidden": [8]}], "folds": 2},
             "auto": {"folds": 2, "candidates": ["linear", "mlp"]}}


def fitted_parts(model: dict[str, Any], target: dict[str, Any] | None = None) -> Predictor:
    raw = base_config(model=model, **({"target": target} if target else {}))
    if model["type"] in ENSEMBLES:  # members are fitted the ensemble's way (folds, weights)
        raw["model"] = {**model, **ENSEMBLES[model["type"]]}
        raw["training"] = {"epochs": 1, "batch_size": 64, "progress": False}
        return Pipeline(raw).fit(make_frame(100)).parts
    if MODELS.get(model["type"]).view == "raw":  # a model of raw columns takes no text
        raw["features"] = [f for f in raw["features"] if f["type"] != "text"]
    config = parse_config(raw)
    frame = make_frame(100)
    features = [feature.fit(frame[feature.name]) for feature in build_features(config)]
    fitted_target = TARGETS.get(config.target.type)(config.target).fit(frame[config.target.name])
    parts = Predictor.build(config, features, fitted_target)
    if isinstance(parts.maker, Learner) and parts.maker.refits:  # its module predicts once fitted
        data = parts.tensors(frame)
        parts.maker.fit(parts.model, data, data, fitted_target, config.training)
    return parts


@pytest.mark.parametrize("model_type", MODELS.names())
@pytest.mark.parametrize("target,outputs", [
    ({"name": "label", "type": "binary"}, 1),
    ({"name": "kind", "type": "category"}, 3),
    ({"name": "amount", "type": "number"}, 1),
])
def test_every_model_gives_one_output_per_target_unit(model_type: str, target: dict[str, Any], outputs: int) -> None:
    if model_type == "tfidf_logistic" and target["type"] == "number":
        with pytest.raises(ConfigError, match="predicts classes"):
            fitted_parts({"type": model_type}, target)
        return
    parts = fitted_parts({"type": model_type}, target)
    raw = parts.model(parts.inputs(make_frame(32, seed=1)))
    assert raw.shape == (32, outputs)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("init", ["gaussian", "xavier", "kaiming", "zeros", "torch"])
def test_mlp_options(activation: str, init: str) -> None:
    parts = fitted_parts({"type": "mlp", "hidden": [8, 4], "activation": activation, "init": init,
                          "dropout": 0.2, "batch_norm": True})
    layers = [m for m in parts.model.body if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in layers] == [8, 4]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in parts.model.body)
    if init == "zeros":
        assert all(float(layer.weight.detach().abs().sum()) == 0.0 for layer in layers)
    else:
        assert all(float(layer.weight.detach().abs().sum()) > 0.0 for layer in layers)


def test_mlp_torch_init_is_pytorchs_own_linear_init() -> None:
    """init: torch leaves weights and biases as nn.Linear draws them: uniform within 1/sqrt(fan_in),
    biases included (every other scheme starts biases at zero); kaiming's bound is sqrt(6/fan_in)."""
    parts = fitted_parts({"type": "mlp", "hidden": [64], "init": "torch", "batch_norm": False})
    parts_kaiming = fitted_parts({"type": "mlp", "hidden": [64], "init": "kaiming", "batch_norm": False})
    for layer, other in zip((m for m in parts.model.modules() if isinstance(m, torch.nn.Linear)),
                            (m for m in parts_kaiming.model.modules() if isinstance(m, torch.nn.Linear))):
        bound = 1 / layer.in_features ** 0.5
        assert float(layer.weight.abs().max()) <= bound
        assert float(layer.bias.abs().max()) > 0.0
        assert float(other.weight.abs().max()) > bound  # kaiming's wider range: the two differ
        assert float(other.bias.abs().max()) == 0.0


def test_linear_is_a_single_affine_layer() -> None:
    parts = fitted_parts({"type": "linear"})
    linear_layers = [m for m in parts.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear_layers) == 1


def test_unknown_model_type_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model type 'xgboost'; valid: auto, ensemble, gbdt, linear, mlp"):
        MODELS.get("xgboost", path="model.type")
