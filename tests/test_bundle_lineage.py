"""Bundles are immutable: later stages derive new ones that record their parent; every
member is typed and verified; format-1 bundles still load; the test split is recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import modelmill
from modelmill.bundle import MANIFEST, ModelFiles, derive, read_bundle, write_bundle
from modelmill.data.split import SplitRecord
from tests.conftest import base_config, make_frame

FORMAT_1 = Path(__file__).parent / "fixtures" / "bundle_format1"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline = modelmill.Pipeline(base_config(evaluation={"plots": False, "report": False})).fit(make_frame(300))
    return pipeline.save(tmp_path_factory.mktemp("lineage") / "bundle")


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_derived_bundle_holds_the_artefact_names_its_parent_and_leaves_it_alone(trained: Path,
                                                                                  tmp_path: Path) -> None:
    before = snapshot(trained)
    parent = read_bundle(trained)
    child_path = derive(parent, tmp_path / "child", action="exported", add={"model.onnx": b"\x08\x07graph"},
                        details={"opset": 17})
    child = read_bundle(child_path)
    assert child.artifact("model.onnx") == b"\x08\x07graph"
    assert child.lineage.action == "exported" and child.lineage.parent == parent.digest
    assert child.lineage.ancestors[-1]["sha256"] == parent.digest
    assert child.lineage.ancestors[-1]["action"] == "trained"
    assert child.lineage.details["opset"] == 17 and child.lineage.details["added"] == ["model.onnx"]
    assert snapshot(trained) == before  # the parent is unchanged
    # the derived bundle predicts as its parent does: every member came along
    frame = make_frame(50, seed=3)
    pd.testing.assert_frame_equal(modelmill.load(child_path).predict(frame), modelmill.load(trained).predict(frame))
    # a derivation of the derived one keeps the whole chain
    grandchild = read_bundle(derive(child, tmp_path / "grandchild", action="compressed"))
    assert [a["action"] for a in grandchild.lineage.ancestors] == ["trained", "exported"]
    assert grandchild.lineage.parent == child.digest


def test_a_flipped_byte_in_an_added_artefact_is_an_integrity_error_naming_it(trained: Path,
                                                                             tmp_path: Path) -> None:
    child = derive(read_bundle(trained), tmp_path / "child", action="exported", add={"model.onnx": b"0123456789"})
    data = bytearray((child / "model.onnx").read_bytes())
    data[4] ^= 0x01
    (child / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(modelmill.BundleError, match="integrity check failed for .*model.onnx"):
        read_bundle(child)


def test_derive_refuses_to_write_into_its_parent_or_over_a_member(trained: Path, tmp_path: Path) -> None:
    parent = read_bundle(trained)
    with pytest.raises(modelmill.BundleError, match="immutable"):
        derive(parent, trained, action="compressed", add={"x.bin": b"1"})
    with pytest.raises(modelmill.BundleError, match="already holds .*config.yaml.*replace="):
        derive(parent, tmp_path / "child", action="compressed", add={"config.yaml": b"name: x"})
    with pytest.raises(modelmill.BundleError, match="no such file"):
        derive(parent, tmp_path / "child", action="compressed", replace={"weights.bin": b"1"})
    assert not (tmp_path / "child").exists()


def test_a_bundle_is_never_overwritten(trained: Path, tmp_path: Path) -> None:
    pipeline = modelmill.Pipeline(base_config(evaluation={"plots": False, "report": False})).fit(make_frame(120))
    with pytest.raises(modelmill.BundleError, match="already holds a bundle; bundles are immutable"):
        pipeline.save(trained)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(modelmill.BundleError, match="already holds files"):
        pipeline.save(folder)
    assert (folder / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert read_bundle(pipeline.save(tmp_path / "empty")).name == "tiny"


def test_models_and_their_artefacts_are_typed_members(trained: Path, tmp_path: Path) -> None:
    parent = read_bundle(trained)
    assert parent.format_version == 2 and list(parent.models) == ["model"]
    assert parent.models["model"].type == "mlp" and parent.models["model"].runtime == "torch"
    assert set(parent.model_artifacts()) == {"weights.safetensors"}
    assert parent.config().name == "tiny" and parent.report_html() is None and parent.plots() == {}
    member = ModelFiles(type="gbdt", runtime="lightgbm", artifacts={"trees.txt": b"tree\nversion=v4\n"})
    child = read_bundle(derive(parent, tmp_path / "ensemble", action="ensembled", models={"trees": member}))
    assert list(child.models) == ["model", "trees"]
    assert child.model_artifacts("trees") == {"trees.txt": b"tree\nversion=v4\n"}
    assert (tmp_path / "ensemble" / "models" / "trees" / "trees.txt").is_file()
    with pytest.raises(modelmill.BundleError, match="no model 'forest'"):
        child.model_artifacts("forest")


def test_a_format_1_bundle_still_loads_and_predicts_as_it_did() -> None:
    manifest = json.loads((FORMAT_1 / "bundle" / MANIFEST).read_text())
    assert manifest["format_version"] == 1 and "models" not in manifest
    bundle = read_bundle(FORMAT_1 / "bundle")
    assert bundle.lineage.action == "trained" and bundle.lineage.parent is None and bundle.split() is None
    predicted = modelmill.load(FORMAT_1 / "bundle").predict(pd.read_csv(FORMAT_1 / "inputs.csv"))
    expected = json.loads((FORMAT_1 / "predictions.json").read_text())
    assert sorted(predicted.columns) == sorted(expected)
    for column, values in expected.items():
        if isinstance(values[0], float):  # float32 kernels differ in the last bits between CPUs (AVX2, AVX-512)
            assert predicted[column].tolist() == pytest.approx(values, rel=1e-6, abs=1e-7), column
        else:
            assert predicted[column].tolist() == values, column


def test_a_format_1_bundle_can_be_derived_into_format_2(tmp_path: Path) -> None:
    child = read_bundle(derive(read_bundle(FORMAT_1 / "bundle"), tmp_path / "child", action="exported",
                               add={"card.md": b"# model card"}))
    assert child.format_version == 2 and child.models["model"].artifacts == {"weights.safetensors": "weights.safetensors"}
    assert child.lineage.ancestors[0]["name"] == "format1"


def test_low_level_bundles_without_models_or_lineage_read_with_defaults(tmp_path: Path) -> None:
    bundle = read_bundle(write_bundle(tmp_path / "b", {"a.json": b"{}"}, {}))
    assert bundle.models == {} and bundle.lineage.action == "trained"


def test_the_split_record_rebuilds_the_test_split_or_says_the_data_changed(tmp_path: Path) -> None:
    frame = make_frame(300)
    pipeline = modelmill.Pipeline(base_config(evaluation={"plots": False, "report": False})).fit(frame)
    record = SplitRecord.from_json(read_bundle(pipeline.save(tmp_path / "bundle")).split() or {})
    assert record.rows == {"train": 202, "valid": 23, "test": 75} and len(record.test_rows) == 75
    assert record.settings["method"] == "stratified" and record.source == "data.csv"
    rebuilt = record.test_split(frame.sample(frac=1.0, random_state=5))  # the same data, in another order
    assert len(rebuilt) == 75
    metrics = pipeline.evaluate(rebuilt)
    assert metrics["roc_auc"] == pipeline.metrics_["roc_auc"]  # the very rows of the test split
    changed = frame.copy()
    changed.loc[changed["x"].isin(rebuilt["x"].iloc[:3]), "x"] += 1
    with pytest.raises(modelmill.DataError, match="the data changed since the bundle was trained: 3 of 75"):
        record.test_split(changed)
    with pytest.raises(modelmill.DataError, match="no column"):
        record.test_split(frame.drop(columns=["colour"]))


def test_format_1_fixture_is_untouched_by_loading(tmp_path: Path) -> None:
    copy = tmp_path / "format1"
    shutil.copytree(FORMAT_1 / "bundle", copy)
    modelmill.load(copy)
    assert snapshot(copy) == snapshot(FORMAT_1 / "bundle")
