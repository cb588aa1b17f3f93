"""The bundle: written atomically, every file verified on load, never unpickled, and
predictions identical to the in-process pipeline."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import modelmill
from modelmill.bundle import MANIFEST, WEIGHTS, encode_weights, parse_weights, read_bundle, write_bundle
from tests.conftest import base_config, make_frame


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[modelmill.Pipeline, Path]:
    pipeline = modelmill.Pipeline(base_config()).fit(make_frame(400))
    path = pipeline.save(tmp_path_factory.mktemp("b") / "bundle")
    return pipeline, path


def test_bundle_has_the_documented_files(fitted: tuple[modelmill.Pipeline, Path]) -> None:
    _, path = fitted
    for name in ["manifest.json", "config.yaml", "schema.json", "features.json", WEIGHTS,
                 "profile.json", "metrics.json", "report.html", "cleaning_report.json"]:
        assert (path / name).is_file(), name
    manifest = json.loads((path / MANIFEST).read_text())
    assert set(manifest["files"]) >= {"config.yaml", WEIGHTS, "report.html"}
    assert manifest["format_version"] == 2 and manifest["data_sha256"]
    schema = json.loads((path / "schema.json").read_text())
    colour = next(c for c in schema["inputs"] if c["name"] == "colour")
    assert colour["values"] == ["blue", "green", "red"]


def test_loaded_bundle_predicts_exactly_like_the_pipeline(fitted: tuple[modelmill.Pipeline, Path]) -> None:
    pipeline, path = fitted
    frame = make_frame(200, seed=7)
    pd.testing.assert_frame_equal(modelmill.load(path).predict(frame), pipeline.predict(frame))


def test_every_save_of_one_fit_writes_the_same_card_and_report(fitted: tuple[modelmill.Pipeline, Path],
                                                               tmp_path: Path) -> None:
    """The card's time is the fit's, not the save's: a save a second later (an encrypted copy, say)
    holds the very same card and report, so their hashes in the manifest agree."""
    pipeline, first = fitted
    time.sleep(1.1)  # past the second the card's time is written to
    again = pipeline.save(tmp_path / "again")
    for name in ("model_card.json", "report.html"):
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    assert json.loads((first / "model_card.json").read_text())["created_at"] == pipeline.fitted_at_


@pytest.mark.parametrize("name", ["config.yaml", "features.json", WEIGHTS, "profile.json"])
def test_one_changed_byte_is_an_integrity_error_naming_the_file(
    fitted: tuple[modelmill.Pipeline, Path], tmp_path: Path, name: str
) -> None:
    _, path = fitted
    copy = tmp_path / "copy"
    write_bundle(copy, {n: (path / n).read_bytes() for n in json.loads((path / MANIFEST).read_text())["files"]}, {})
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(modelmill.BundleError, match=f"integrity check failed for .*{name}"):
        modelmill.load(copy)


def test_a_pickle_where_weights_are_expected_is_refused(fitted: tuple[modelmill.Pipeline, Path], tmp_path: Path) -> None:
    _, path = fitted
    files = {n: (path / n).read_bytes() for n in json.loads((path / MANIFEST).read_text())["files"]}
    files[WEIGHTS] = pickle.dumps({"weight": [1.0, 2.0]})
    write_bundle(tmp_path / "evil", files, {})  # hashes match: only the content check can refuse it
    with pytest.raises(modelmill.BundleError, match="pickle.*never unpickles"):
        modelmill.load(tmp_path / "evil")


def test_not_a_bundle_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(modelmill.BundleError, match="does not exist"):
        read_bundle(tmp_path / "nope")
    with pytest.raises(modelmill.BundleError, match="not a modelmill bundle"):
        read_bundle(tmp_path)


def test_failed_write_leaves_the_old_bundle_and_no_temp_dirs(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    write_bundle(target, {"a.json": b"{}"}, {})

    with pytest.raises(Exception):
        write_bundle(target, {"a.json": b"{}", "../escape": b"x"}, {})
    assert read_bundle(target).files == {"a.json": b"{}"}
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_bundle_of_the_python_api_carries_plots_in_its_report(fitted: tuple[modelmill.Pipeline, Path]) -> None:
    _, path = fitted
    plots = sorted(p.name for p in (path / "plots").glob("*.png"))
    assert {"roc.png", "pr.png", "confusion.png", "calibration.png", "learning_curves.png"} <= set(plots)
    report = (path / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= len(plots)
    assert "Cleaning" in report and "roc_auc" in report


def test_evaluating_other_data_leaves_the_test_set_plots_for_the_bundle(tmp_path: Path) -> None:
    pipeline = modelmill.Pipeline(base_config()).fit(make_frame(300))
    before = dict(pipeline.plots_)
    metrics = pipeline.evaluate(make_frame(100, seed=5), out_dir=tmp_path / "evaluation")
    assert (tmp_path / "evaluation" / "plots" / "roc.png").is_file() and "roc_auc" in metrics
    assert pipeline.plots_ == before


def test_safetensors_whose_header_length_looks_like_a_pickle_still_load() -> None:
    """The header length is the first 8 bytes; its low byte may be 0x80, the pickle marker."""
    for extra in range(400):
        tensors = {"w" + "x" * extra: torch.arange(3.0)}
        data = encode_weights(tensors)
        if data[:1] == b"\x80":
            break
    assert data[:1] == b"\x80"
    loaded = parse_weights(data, where=Path("weights.safetensors"))
    assert torch.equal(next(iter(loaded.values())), torch.arange(3.0))
