"""Magnitude pruning of torch models: structured pruning really shrinks the layers and its
config rebuilds exactly the pruned module; unstructured pruning zeroes the asked share and
leaves no masks; fine-tuning wins back what pruning cost; what cannot be pruned says so."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import modelmill
from modelmill.compression.prune import FineTuning, Pruned, prune
from modelmill.config import dump_config
from modelmill.config.io import parse_config
from modelmill.errors import ModelError
from modelmill.features import features_from_state
from modelmill.predictor import Predictor, model_maker
from tests.conftest import base_config, make_frame
from tests.features.test_image import frame_of, make_images


QUIET = {"plots": False, "report": False}


def tabular(hidden: list[int], **model: Any) -> dict[str, Any]:
    features = [f for f in base_config()["features"] if f["type"] != "date"]
    return base_config(features=features, model={"type": "mlp", "hidden": hidden, **model} if hidden else
                       {"type": "linear"}, training={"epochs": 3, "batch_size": 64, "progress": False, "threads": 1},
                       evaluation=QUIET)


def images(encoder: list[dict[str, Any]], epochs: int = 4) -> dict[str, Any]:
    return {
        "name": "blobs",
        "data": {"source": "unused", "split": {"method": "stratified", "test": 0.2, "seed": 0}},
        "features": [{"name": "x", "type": "number"}, {"name": "image", "type": "image", "encoder": encoder}],
        "target": {"name": "label", "type": "category"},
        "model": {"type": "mlp", "hidden": [16], "dropout": 0.1},
        "training": {"epochs": epochs, "progress": False, "threads": 1, "optimizer": {"type": "adamw", "lr": 0.01}},
        "evaluation": QUIET,
    }


CNN = [{"type": "conv", "filters": 8, "batch_norm": True}, {"type": "pool"},
       {"type": "conv", "filters": 6, "padding": "same"}, {"type": "flatten"}]
POOLED = [{"type": "conv", "filters": 8, "batch_norm": True}, {"type": "pool"},
          {"type": "conv", "filters": 12, "batch_norm": True}, {"type": "global_pool"}]


def image_frame(count: int, seed: int = 0) -> pd.DataFrame:
    pixels, labels = make_images(count, seed=seed)
    frame = frame_of(pixels, labels)
    frame.insert(0, "x", np.random.default_rng(seed).normal(size=count))  # a feature before the image's columns
    return frame


@pytest.fixture(scope="module")
def mlp() -> Predictor:
    return modelmill.Pipeline(tabular([16, 8])).fit(make_frame(300)).parts


@pytest.fixture(scope="module", params=["flatten", "global_pool"])
def cnn(request: pytest.FixtureRequest) -> Predictor:
    encoder = CNN if request.param == "flatten" else POOLED
    return modelmill.Pipeline(images(encoder)).fit(image_frame(240)).parts


def rebuilt(pruned: Pruned) -> torch.nn.Module:
    """The pruned model as a derived bundle loads it: built from its config, then its weights."""
    predictor = pruned.predictor
    config = parse_config(yaml.safe_load(dump_config(predictor.config)))  # as written to config.yaml
    state = json_round_trip(predictor.feature_state())  # as written to features.json
    module = model_maker(config).build(features_from_state(config, state), predictor.target)
    module.load_state_dict(predictor.model.state_dict())
    return module.eval()


def json_round_trip(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, inputs: list[torch.Tensor]) -> None:
    with torch.inference_mode():
        torch.testing.assert_close(a.eval()(inputs), b.eval()(inputs), rtol=0, atol=0)


def test_structured_pruning_shrinks_the_mlp_and_its_config_rebuilds_it(mlp: Predictor) -> None:
    before = [p.clone() for p in mlp.model.parameters()]
    pruned = prune(mlp, sparsity=0.5)
    assert pruned.predictor.config.model.hidden == [8, 4]
    layers = {layer["layer"]: (layer["kept"], layer["total"]) for layer in pruned.details["layers"]}
    assert layers == {"model.hidden.0": (8, 16), "model.hidden.1": (4, 8)}
    body = pruned.predictor.model.body
    assert body[0].weight.shape[0] == 8 and body[1].num_features == 8 and body[4].weight.shape == (4, 8)
    assert pruned.predictor.model.head.weight.shape[1] == 4  # the head keeps its outputs
    assert pruned.details["parameters_after"] < pruned.details["parameters_before"] == \
        sum(p.numel() for p in before)
    inputs = pruned.predictor.inputs(make_frame(50, seed=3))
    same_outputs(rebuilt(pruned), pruned.predictor.model, inputs)
    assert all(torch.equal(a, b) for a, b in zip(before, mlp.model.parameters()))  # the original is untouched
    assert pruned.details["left_unpruned"] == ["review"]  # the text encoder is left as it is
    assert pruned.details["method"] == "structured" and pruned.details["finetune"] is None


def test_structured_pruning_shrinks_the_cnn_at_its_offset(cnn: Predictor) -> None:
    frame = image_frame(40, seed=7)
    original = cnn.model
    width = cnn.features[1].output_dim
    pruned = prune(cnn, sparsity=0.5)
    encoder = pruned.predictor.config.features[1].encoder
    filters = [layer.filters for layer in cnn.config.features[1].encoder if layer.type == "conv"]
    assert [layer.filters for layer in encoder if layer.type == "conv"] == [f // 2 for f in filters]
    assert pruned.predictor.config.model.hidden == [8]
    new_width = pruned.predictor.features[1].output_dim
    assert new_width == width // filters[-1] * (filters[-1] // 2) < width
    number = cnn.features[0].output_dim  # the number's columns come first, then the image's
    assert pruned.predictor.model.body[0].weight.shape == (8, number + new_width)
    same_outputs(rebuilt(pruned), pruned.predictor.model, pruned.predictor.inputs(frame))
    assert pruned.details["parameters_after"] < 0.6 * sum(p.numel() for p in original.parameters())
    assert accuracy(pruned.predictor, frame) > 0.5  # still a model, not noise (fine-tuning is tested below)


def test_constant_neurons_go_first_and_their_mean_is_kept(mlp: Predictor) -> None:
    """A neuron whose batch norm has gamma 0 puts out a constant, act(beta): it ranks lowest,
    and once removed its constant reaches the next layer through that layer's bias, so the
    outputs do not change."""
    changed = Predictor(mlp.config, mlp.features, mlp.target, type(mlp.runtime)(copy.deepcopy(mlp.model)), mlp.maker)
    body = changed.model.body
    with torch.no_grad():
        body[1].weight[::2] = 0  # layer 0: neurons 0, 2, … constant
        body[5].weight[1::2] = 0  # layer 1: neurons 1, 3, …
    pruned = prune(changed, sparsity=0.5)
    assert pruned.predictor.config.model.hidden == [8, 4]
    inputs = changed.inputs(make_frame(50, seed=4))
    with torch.inference_mode():
        torch.testing.assert_close(pruned.predictor.model(inputs), changed.model.eval()(inputs), rtol=1e-5, atol=1e-5)


def test_at_least_one_neuron_is_kept(mlp: Predictor) -> None:
    pruned = prune(mlp, sparsity=0.99)
    assert pruned.predictor.config.model.hidden == [1, 1]
    same_outputs(rebuilt(pruned), pruned.predictor.model, pruned.predictor.inputs(make_frame(10)))


def test_unstructured_pruning_zeroes_the_share_and_leaves_no_masks(cnn: Predictor) -> None:
    pruned = prune(cnn, sparsity=0.6, structured=False)
    assert pruned.details["zero_share"] == pytest.approx(0.6, abs=0.01)
    state = pruned.predictor.model.state_dict()
    assert not [name for name in state if name.endswith(("_orig", "_mask"))]
    assert pruned.details["parameters_after"] == pruned.details["parameters_before"]  # dense: no smaller
    assert pruned.predictor.config == cnn.config
    for layer in pruned.details["layers"]:
        weight = pruned.predictor.model.get_submodule(layer["layer"]).weight
        assert int(weight.count_nonzero()) == layer["kept"] == pytest.approx(0.4 * layer["total"], abs=1), layer
    conv = pruned.predictor.model.encoders[1][2][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)  # the fast CPU layout is kept
    assert not any(name.endswith("_mask") for name in cnn.model.state_dict())  # the original is untouched


def test_fine_tuning_wins_back_what_pruning_cost() -> None:
    frame = image_frame(360, seed=1)
    fitted = modelmill.Pipeline(images(CNN, epochs=6)).fit(frame.iloc[:240]).parts
    valid = frame.iloc[240:]
    tuning = FineTuning(train=image_frame(240, seed=2), valid=valid, epochs=3, lr_scale=1.0)
    tuned = prune(fitted, sparsity=0.75, finetune=tuning)
    report = tuned.details["finetune"]
    assert report["valid_pruned"] < accuracy(fitted, valid) - 0.05, report  # pruning hurt
    assert report["valid_after"] >= report["valid_before"] and report["valid_after"] > report["valid_pruned"] + 0.05
    assert report["kept"] == "fine-tuned" and len(report["history"]) == 3 and report["recalibrated_rows"] == 240
    assert accuracy(tuned.predictor, valid) == report["valid_after"]
    same_outputs(rebuilt(tuned), tuned.predictor.model, tuned.predictor.inputs(frame.head(20)))
    only_norms = prune(fitted, sparsity=0.75, finetune=replace(tuning, epochs=0)).details["finetune"]
    assert only_norms["history"] == [] and "valid_after" not in only_norms
    assert only_norms["valid_before"] == report["valid_before"]  # the statistics, measured the same way
    masked = prune(fitted, sparsity=0.8, structured=False, finetune=replace(tuning, epochs=1))
    assert masked.details["finetune"]["epochs"] == 1
    for layer in masked.details["layers"]:  # trained weights stayed masked
        weight = masked.predictor.model.get_submodule(layer["layer"]).weight
        assert int(weight.count_nonzero()) == layer["kept"] == pytest.approx(0.2 * layer["total"], abs=1), layer


def accuracy(predictor: Predictor, frame: pd.DataFrame) -> float:
    return float((predictor.predict(frame).codes == predictor.target.codes(frame["label"])).mean())


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.2, 1.5])
def test_a_sparsity_outside_0_1_is_refused(mlp: Predictor, sparsity: float) -> None:
    with pytest.raises(ModelError, match=rf"sparsity must be between 0 and 1 \(exclusive\), got {sparsity}"):
        prune(mlp, sparsity=sparsity)


def test_a_model_with_nothing_to_prune_structurally_points_to_unstructured() -> None:
    linear = modelmill.Pipeline(tabular([])).fit(make_frame(200)).parts
    with pytest.raises(ModelError, match=r"no hidden layer and no convolution.*Fix: --unstructured"):
        prune(linear, sparsity=0.5)
    assert prune(linear, sparsity=0.5, structured=False).details["zero_share"] == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(("model", "message"), [
    ({"type": "gbdt"}, r"'gbdt' is fitted by its own solver, not a torch network"),
    ({"type": "ensemble", "members": [{"type": "mlp"}, {"type": "linear"}]}, r"ensemble of members.*prune the members"),
    ({"type": "auto"}, r"'auto' is an ensemble of members"),
])
def test_other_model_types_are_refused_clearly(mlp: Predictor, model: dict[str, Any], message: str) -> None:
    config = mlp.config.model_copy(update={"model": parse_config({**tabular([8]), "model": model}).model})
    other = Predictor(config, mlp.features, mlp.target, mlp.runtime, model_maker(config))
    with pytest.raises(ModelError, match=message):
        prune(other, sparsity=0.5)
