"""Compression and export of text models (tokens of varying length) and of number targets
(whose errors the gate weighs against their size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelmill
from modelmill.api import Pipeline
from modelmill.bundle import read_bundle
from modelmill.compression.compress import compress
from modelmill.compression.export import export
from modelmill.errors import ModelError
from tests.conftest import base_config, make_frame
from tests.text_data import make_reviews, text_config


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("reviews")
    path = folder / "reviews.csv"
    make_reviews(240).to_csv(path, index=False)
    return folder, path


def _text_bundle(folder: Path, name: str, encoder: dict[str, object]) -> Path:
    config = text_config(encoder, training={"epochs": 3, "batch_size": 32, "progress": False, "seed": 0})
    return Pipeline(config, base_dir=folder).fit().save(folder / name)


def test_a_text_cnn_gets_dynamic_int8_and_agrees_with_torch(reviews: tuple[Path, Path], tmp_path: Path) -> None:
    folder, rows = reviews
    bundle = _text_bundle(folder, "cnn", {"type": "cnn"})
    out = compress(bundle, tmp_path / "int8", method="int8", data=str(rows), max_drop=0.05)
    details = read_bundle(out).lineage.details
    assert details["int8"] == "dynamic"  # tokens of varying length: no calibration
    assert details["float_graph_check"]["passed"]
    frame = make_reviews(40, seed=7)
    got = modelmill.load(out).predict(frame)
    expected = modelmill.load(bundle).predict(frame)
    assert (got["sentiment_predicted"] == expected["sentiment_predicted"]).mean() >= 0.9


def test_an_encoder_that_trims_by_the_data_is_a_clear_error(reviews: tuple[Path, Path], tmp_path: Path) -> None:
    folder, rows = reviews
    bundle = _text_bundle(folder, "rnn", {"type": "rnn"})
    with pytest.raises(ModelError, match=r"tokens of 'review'.*Fix: serve this model on torch"):
        export(bundle, tmp_path / "onnx", data=str(rows))
    assert not (tmp_path / "onnx").exists()


def test_a_number_target_is_gated_on_a_share_of_its_error(tmp_path: Path) -> None:
    """RMSE in a price's units: 0.005 of it would refuse any change; the gate takes 0.5% of it."""
    frame = make_frame(rows=500, seed=2)
    config = base_config(target={"name": "amount", "type": "number"}, model={"type": "mlp", "hidden": [64]},
                         training={"epochs": 6, "batch_size": 64, "progress": False, "seed": 0})
    config["features"] = [f for f in config["features"] if f["name"] != "review"]
    bundle = Pipeline(config).fit(frame).save(tmp_path / "amounts")
    rows = tmp_path / "rows.csv"
    make_frame(rows=300, seed=9).to_csv(rows, index=False)
    out = compress(bundle, tmp_path / "half", method="float16", data=str(rows))
    compressed = read_bundle(out)
    gate = compressed.lineage.details["gate"]
    assert gate["metric"] == "rmse" and gate["relative"] and gate["drop"] <= 0.005
    metrics = compressed.metrics()
    assert metrics["evaluated_on"] == str(rows) and np.isfinite(metrics["rmse"])
    assert "report.html" not in compressed.files and not any(n.startswith("plots/") for n in compressed.files)
    assert compressed.lineage.details["removed"]  # the parent's report and plots
