"""modelmill compress: int8 and half-precision weights behind the accuracy gate, the derived
bundle's record of what was done, and the refusals that write nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import modelmill
from modelmill.api import Pipeline
from modelmill.bundle import WEIGHTS, read_bundle
from modelmill.compression.compress import Options, compress
from modelmill.compression.gate import GateRefused
from modelmill.errors import ModelError
from tests.compression.conftest import run_main
from tests.conftest import base_config, make_frame
from tests.damage import flip_one_byte


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle: Path, rows_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compress(tiny_bundle, tmp_path_factory.mktemp("int8") / "int8", method="int8", data=str(rows_csv),
                    max_drop=0.02)


def test_int8_replaces_the_weights_by_an_int8_graph_and_records_the_figures(int8_bundle: Path,
                                                                            tiny_bundle: Path) -> None:
    bundle, parent = read_bundle(int8_bundle), read_bundle(tiny_bundle)
    assert bundle.model().runtime == "onnxruntime" and WEIGHTS not in bundle.files
    assert bundle.lineage.action == "compressed" and bundle.lineage.parent == parent.digest
    details = bundle.lineage.details
    assert details["method"] == "int8" and details["int8"] == "dynamic"  # no convolution: dynamic
    before, after = details["before"], details["after"]
    assert after["size_bytes"] < before["size_bytes"]
    assert set(before["latency_ms"]) == set(after["latency_ms"]) and before["latency_ms"]
    assert details["gate"]["metric"] == "roc_auc" and details["gate"]["drop"] <= 0.02
    assert details["gate"]["drop"] == pytest.approx(before["value"] - after["value"], abs=1e-6)
    import onnx

    graph = onnx.load_from_string(bundle.model_artifacts()["model.onnx"])
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul")
               for node in graph.graph.node)  # really int8 kernels
    loaded = modelmill.load(int8_bundle)  # a fresh load predicts as the gate measured
    assert loaded.parts.runtime.name == "onnxruntime"
    frame = make_frame(rows=50, seed=8)
    assert len(loaded.predict(frame)) == 50


def test_the_int8_bundles_importance_is_the_definitions(int8_bundle: Path) -> None:
    # an int8 graph scales its activations by the whole run's range, so rows scored together
    # change each other's outputs: importance must score each shuffle in a pass of its own
    from modelmill.explain import importance
    from tests.explain.test_attributions import by_definition

    predictor = modelmill.load(int8_bundle).parts
    frame = make_frame(rows=120, seed=9)
    frame = frame.loc[predictor.target.labelled(frame["label"])].reset_index(drop=True)
    found = importance(predictor, frame, repeats=2, seed=0)
    expected = by_definition(predictor, frame, repeats=2, seed=0)
    assert any(mean != 0 for mean, _ in expected.values())
    assert {c: pytest.approx(v, rel=1e-5, abs=1e-7) for c, v in expected.items()} == found


def test_the_int8_bundle_serves_on_onnxruntime_only(int8_bundle: Path) -> None:
    with pytest.raises(Exception, match="runs on onnxruntime only"):
        modelmill.load(int8_bundle, runtime="torch")


def test_half_weights_keep_predictions_close(tiny_bundle: Path, rows_csv: Path, tmp_path: Path) -> None:
    out = compress(tiny_bundle, tmp_path / "bf16", method="bfloat16", data=str(rows_csv), max_drop=0.02)
    bundle = read_bundle(out)
    weights = bundle.weights()
    assert {str(t.dtype) for t in weights.values() if t.is_floating_point()} == {"torch.bfloat16"}
    assert len(bundle.files[WEIGHTS]) < 0.6 * len(read_bundle(tiny_bundle).files[WEIGHTS])
    frame = make_frame(rows=100, seed=8)
    half, full = modelmill.load(out).predict(frame), modelmill.load(tiny_bundle).predict(frame)
    np.testing.assert_allclose(half["label_probability_good"], full["label_probability_good"], atol=0.02)
    with pytest.raises(ModelError, match="already bfloat16"):
        compress(out, tmp_path / "again", method="float16", data=str(rows_csv))
    assert not (tmp_path / "again").exists()


def test_the_gate_refuses_and_writes_nothing(tiny_bundle: Path, rows_csv: Path, train_csv: Path,
                                             tmp_path: Path) -> None:
    """An aggressive pruning loses more than the gate allows: refused, nothing written."""
    with pytest.raises(GateRefused, match=r"refused by the accuracy gate: roc_auc went from .* Nothing was written"):
        compress(tiny_bundle, tmp_path / "pruned", method="prune", options=Options(sparsity=0.97),
                 data=str(rows_csv), train=str(train_csv), max_drop=0.0)
    assert not (tmp_path / "pruned").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder left either


def test_bad_input_exits_2_and_writes_nothing(int8_bundle: Path, tiny_bundle: Path, rows_csv: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"

    def refused(*args: str) -> str:
        code, output = run_main(monkeypatch, capsys, "compress", *args, "-o", str(out), "--data", str(rows_csv))
        assert code == 2 and "Traceback" not in output, output
        assert not out.exists()
        return output

    assert "holds an ONNX graph already (trained → compressed)" in refused(str(int8_bundle), "--method", "int8")
    assert "works on the float model" in refused(str(int8_bundle), "--method", "prune")
    assert "unknown compression method 'zip'" in refused(str(tiny_bundle), "--method", "zip").lower() or \
        "'zip'" in refused(str(tiny_bundle), "--method", "zip")
    assert "--sparsity 1.5 must be between 0 and 1" in refused(str(tiny_bundle), "--method", "prune",
                                                               "--sparsity", "1.5")
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_bundle, damaged)
    flip_one_byte(damaged / "features.json")
    assert "integrity check failed" in refused(str(damaged), "--method", "int8")


def test_int8_does_not_apply_to_trees(tmp_path: Path, rows_csv: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = base_config(model={"type": "gbdt", "trees": 20})
    config["features"] = [f for f in config["features"] if f["type"] != "text"]
    trees = Pipeline(config).fit(make_frame(rows=300, seed=2)).save(tmp_path / "trees")
    code, output = run_main(monkeypatch, capsys, "compress", str(trees), "--method", "int8", "-o",
                            str(tmp_path / "out"), "--data", str(rows_csv))
    assert code == 2 and "int8 applies to neural models; model type 'gbdt'" in output and "--method prune" in output
    assert not (tmp_path / "out").exists()


def test_structured_pruning_writes_a_smaller_model_that_loads_as_measured(tiny_bundle: Path, rows_csv: Path,
                                                                          train_csv: Path, tmp_path: Path) -> None:
    out = compress(tiny_bundle, tmp_path / "pruned", method="prune", options=Options(sparsity=0.5),
                   data=str(rows_csv), train=str(train_csv), max_drop=0.05)
    bundle = read_bundle(out)
    assert bundle.config().model.hidden == [64, 32]  # half the neurons of [128, 64]
    assert bundle.manifest["config_sha256"] != read_bundle(tiny_bundle).manifest["config_sha256"]
    details = bundle.lineage.details
    assert details["method"] == "prune" and details["structured"] and details["parameters_after"] < \
        details["parameters_before"] / 2
    assert details["after"]["size_bytes"] < 0.5 * details["before"]["size_bytes"]
    # a fresh load scores what the gate measured
    from modelmill.compression.gate import measure
    from modelmill.compression.rows import gate_rows

    rows = gate_rows(bundle, str(rows_csv))
    again = measure(modelmill.load(out).parts, rows.frame, "roc_auc", 0, latency=False)
    assert again.value == pytest.approx(details["after"]["value"], abs=1e-9)
