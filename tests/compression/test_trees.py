"""gbdt models as ONNX graphs (raw scores within 1e-4 of LightGBM through ONNX Runtime, on
categories and missing values, at the trees' own split points) and with fewer trees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

import modelmill
from modelmill.compression import trees
from modelmill.compression.trees import prune_trees, trees_to_onnx
from modelmill.models.gbdt import Trees
from modelmill.predictor import Predictor
from modelmill.predictor.onnx import OnnxRuntime, session
from tests.conftest import base_config, make_frame

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"},
         {"name": "flag", "type": "binary"}, {"name": "when", "type": "date"}]
SHADES = np.array(list("abcdefghij"))  # more than LightGBM's max_cat_to_onehot (4): splits on sets of codes
TARGETS = {"binary": {"name": "label", "type": "binary"}, "category": {"name": "kind", "type": "category"},
           "number": {"name": "amount", "type": "number"}}


def with_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing numbers, categories and flags, and a category never seen in training."""
    frame = frame.copy()
    frame["shade"] = shades(frame)
    frame.loc[::6, "x"] = np.nan
    frame.loc[::4, "colour"] = None
    frame.loc[1::9, "flag"] = None
    frame.loc[5, "colour"] = "purple"
    frame.loc[[7, 8], "x"] = [-1e-36, 1e-300]  # LightGBM reads these as 0
    return frame


def shades(frame: pd.DataFrame) -> np.ndarray:
    """A category of ten values that follows x in no order: trees split it on sets of codes."""
    return SHADES[(np.nan_to_num(frame["x"].to_numpy(dtype=float)) * 7).astype(int) * 3 % 10]


@pytest.fixture(scope="module", params=list(TARGETS))
def predictor(request: pytest.FixtureRequest) -> Predictor:
    config = base_config(features=[*TABLE, {"name": "shade", "type": "category"}], target=TARGETS[request.param],
                         model={"type": "gbdt", "trees": 40, "early_stopping_rounds": None},
                         evaluation={"plots": False, "report": False})
    frame = make_frame(600)
    frame["colour"] = np.where(frame["x"] > 1, "red", frame["colour"])  # a category split worth making
    frame["shade"] = shades(frame)
    frame.loc[::7, "x"] = np.nan
    frame.loc[::5, "colour"] = None
    return modelmill.Pipeline(config).fit(frame).parts


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return with_gaps(make_frame(300, seed=3))


def test_the_graph_gives_the_raw_scores_of_lightgbm(predictor: Predictor, rows: pd.DataFrame) -> None:
    graph = trees_to_onnx(predictor)
    model = onnx.load_from_string(graph)
    assert [i.name for i in model.graph.input] == ["input_0", "input_1", "input_2", "input_3", "input_4"]
    assert [o.name for o in model.graph.output] == ["raw"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # any batch size
    runtime = OnnxRuntime(session(graph))
    expected = predictor.raw(rows).numpy()
    got = runtime.raw(predictor.inputs(rows), None).numpy()
    assert got.shape == expected.shape == (300, predictor.target.output_size)
    assert np.abs(got - expected).max() < 1e-4  # raw margins: no sigmoid or softmax in the graph
    one = runtime.raw(predictor.inputs(rows.iloc[5:6]), None).numpy()  # the unseen category, alone
    assert np.abs(one - expected[5:6]).max() < 1e-4


def test_category_splits_are_in_the_graph(predictor: Predictor) -> None:
    module = predictor.model
    assert isinstance(module, Trees) and "num_cat=" in module.booster.model_to_string()
    assert "||" in json.dumps(module.booster.dump_model())  # a split on a set of codes, {2, 5, …} → left
    nodes = next(n for n in onnx.load_from_string(trees_to_onnx(predictor)).graph.node if n.op_type.startswith("Tree"))
    modes = next(a for a in nodes.attribute if a.name == "nodes_modes").strings
    assert b"BRANCH_EQ" in modes  # LightGBM's category sets, one equality per code


def test_float32_thresholds_are_caught_by_the_check_on_export(predictor: Predictor,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    exact = trees._ensemble_attributes

    def rounded(module: Trees) -> dict[str, Any]:  # what a float32 graph of the trees compares against
        attributes = exact(module)
        attributes["nodes_values"] = [float(np.float32(v)) for v in attributes["nodes_values"]]
        return attributes

    monkeypatch.setattr(trees, "_ensemble_attributes", rounded)
    with pytest.raises(modelmill.ModelError, match="differs from LightGBM by up to .* at the trees' split points"):
        trees_to_onnx(predictor)


def test_pruning_keeps_the_first_half_of_the_iterations_and_round_trips(predictor: Predictor,
                                                                         rows: pd.DataFrame) -> None:
    before = predictor.raw(rows)
    pruned, details = prune_trees(predictor, sparsity=0.5)
    classes = predictor.target.output_size if predictor.target.task == "category" else 1
    assert details["iterations_before"] == 40 and details["iterations_kept"] == 20
    assert details["trees_before"] == 40 * classes and details["trees_after"] == 20 * classes
    assert details["model_bytes_after"] < 0.6 * details["model_bytes_before"]
    assert torch.equal(predictor.raw(rows), before)  # the given predictor is untouched
    module = pruned.model
    assert isinstance(module, Trees)
    expected = module.booster.predict(torch.cat(pruned.inputs(rows), dim=1).numpy(), raw_score=True)
    np.testing.assert_array_equal(pruned.raw(rows).numpy().reshape(expected.shape), expected)
    artifacts = pruned.maker.save(module)
    assert artifacts["trees.txt"].count(b"\nTree=") == 20 * classes
    again = pruned.maker.build(pruned.features, pruned.target)
    pruned.maker.load(again, artifacts, where=Path("bundle"))
    assert torch.equal(again(pruned.inputs(rows)), pruned.raw(rows))
    graph = OnnxRuntime(session(trees_to_onnx(pruned)))  # the smaller model exports as well
    assert np.abs(graph.raw(pruned.inputs(rows), None).numpy() - pruned.raw(rows).numpy()).max() < 1e-4


def test_one_iteration_is_the_least_kept(predictor: Predictor) -> None:
    _, details = prune_trees(predictor, sparsity=0.999)
    assert details["iterations_kept"] == 1


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.5, 1.5])
def test_a_sparsity_outside_0_1_is_refused(predictor: Predictor, sparsity: float) -> None:
    with pytest.raises(modelmill.ModelError, match=f"between 0 and 1 .*got {sparsity}"):
        prune_trees(predictor, sparsity=sparsity)


def test_other_model_types_are_refused_clearly() -> None:
    config = base_config(features=TABLE[:2], model={"type": "linear"},
                         training={"epochs": 1, "batch_size": 64, "progress": False})
    linear = modelmill.Pipeline(config).fit(make_frame(200), evaluate=False).parts
    with pytest.raises(modelmill.ModelError, match="only gbdt models .* model type is 'linear'"):
        trees_to_onnx(linear)
    with pytest.raises(modelmill.ModelError, match="only gbdt models .* model type is 'linear'"):
        prune_trees(linear, sparsity=0.5)


def test_an_unfitted_gbdt_model_is_refused(predictor: Predictor) -> None:
    unfitted = Predictor.build(predictor.config, predictor.features, predictor.target)
    with pytest.raises(modelmill.ModelError, match="before it was fitted"):
        prune_trees(unfitted, sparsity=0.5)
