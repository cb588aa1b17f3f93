"""modelmill export: a derived bundle holding the model as an ONNX graph, checked against
the model, served and predicted with on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import modelmill
from modelmill.bundle import MAIN_MODEL, read_bundle, runtime_model
from modelmill.compression.export import export
from modelmill.errors import BundleError
from tests.compression.conftest import run_main
from tests.conftest import make_frame
from tests.damage import flip_one_byte


@pytest.fixture(scope="module")
def exported(tiny_bundle: Path, rows_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(tiny_bundle, tmp_path_factory.mktemp("exported") / "onnx", data=str(rows_csv))


def test_the_graph_is_added_beside_the_weights_and_checked(exported: Path, tiny_bundle: Path) -> None:
    bundle = read_bundle(exported)
    parent = read_bundle(tiny_bundle)
    assert set(bundle.models) == {MAIN_MODEL, runtime_model("onnxruntime")}
    assert bundle.model().runtime == "torch" and bundle.model(runtime_model("onnxruntime")).runtime == "onnxruntime"
    assert bundle.lineage.action == "exported" and bundle.lineage.parent == parent.digest
    details = bundle.lineage.details
    assert details["check"]["passed"] and details["check"]["max_abs_diff"] <= 1e-4 and details["check"]["rows"] > 100
    names = [i["name"] for i in details["inputs"]]
    assert names == [f"input_{i}" for i in range(5)]
    assert [i["feature"] for i in details["inputs"]] == ["x", "colour", "flag", "when", "review"]
    text = details["inputs"][4]
    assert text["shape"][:2] == ["batch", "length"]  # token ids: the length varies as well


def test_predictions_on_onnxruntime_equal_torch(exported: Path) -> None:
    frame = make_frame(rows=257, seed=11).drop(columns=["label"])
    frame.loc[3, "x"] = np.nan
    frame.loc[4, "review"] = None
    torch_side = modelmill.load(exported, runtime="torch")
    onnx_side = modelmill.load(exported, runtime="onnxruntime")
    assert onnx_side.parts.runtime.name == "onnxruntime" and torch_side.parts.runtime.name == "torch"
    expected, got = torch_side.predict(frame), onnx_side.predict(frame)
    np.testing.assert_allclose(got["label_probability_good"], expected["label_probability_good"], atol=1e-5)
    assert (got["label_predicted"] == expected["label_predicted"]).mean() > 0.99
    one = onnx_side.parts.predict_records([frame.iloc[0].to_dict()])  # the few-records path
    assert one.labels[0] == expected["label_predicted"].iloc[0]


def test_cli_predict_takes_the_runtime(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "in.csv"
    make_frame(rows=20, seed=3).drop(columns=["label"]).to_csv(data, index=False)
    code, output = run_main(monkeypatch, capsys, "predict", str(exported), str(data), "-o", str(tmp_path / "p.csv"),
                            "--runtime", "onnxruntime")
    assert code == 0, output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 20


def test_a_bundle_without_a_graph_cannot_run_on_onnxruntime(tiny_bundle: Path) -> None:
    with pytest.raises(BundleError, match="holds no ONNX graph.*modelmill export"):
        modelmill.load(tiny_bundle, runtime="onnxruntime")


def test_bad_input_is_refused_and_nothing_is_written(exported: Path, tiny_bundle: Path, rows_csv: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BundleError, match="holds an ONNX graph already"):
        export(exported, tmp_path / "twice", data=str(rows_csv))
    assert not (tmp_path / "twice").exists()
    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(tiny_bundle, damaged)
    flip_one_byte(damaged / "weights.safetensors")
    code, output = run_main(monkeypatch, capsys, "export", str(damaged), "-o", str(tmp_path / "out"),
                            "--data", str(rows_csv))
    assert code == 2 and "integrity check failed" in output and "Traceback" not in output
    assert not (tmp_path / "out").exists()
    code, output = run_main(monkeypatch, capsys, "export", str(tiny_bundle), "-o", str(tmp_path / "out"),
                            "--format", "tflite", "--data", str(rows_csv))
    assert code == 2 and "--format 'tflite' is not known" in output
    assert not (tmp_path / "out").exists()
