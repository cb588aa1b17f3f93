"""The model card: every part present and computed from the fit, valid against the schema
published in docs/, in the bundle, and the first section of the run's report."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

import modelmill
from modelmill.bundle import MANIFEST, MODEL_CARD, read_bundle
from modelmill.config import load_config
from modelmill.evaluation.card import (ModelCard, TargetCard, bootstrap_intervals, known_limits, model_card,
                                       schema_text)
from modelmill.evaluation.card_html import card_section
from tests.conftest import base_config, make_frame

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "model-card.schema.json"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[modelmill.Pipeline, Path]:
    pipeline = modelmill.Pipeline(base_config(evaluation={"explain": 3})).fit(make_frame(400))
    return pipeline, pipeline.save(tmp_path_factory.mktemp("card") / "bundle")


@pytest.fixture(scope="module")
def card(fitted: tuple[modelmill.Pipeline, Path]) -> dict[str, Any]:
    return dict(json.loads((fitted[1] / MODEL_CARD).read_text()))


def test_the_card_holds_the_data_cleaning_and_features(fitted: tuple[modelmill.Pipeline, Path],
                                                       card: dict[str, Any]) -> None:
    pipeline, path = fitted
    data = card["data"]
    assert pipeline.cleaning_ is not None
    assert data["rows_read"] == 400 and data["rows_kept"] == pipeline.cleaning_.rows_out
    assert data["sha256"] == json.loads((path / MANIFEST).read_text())["data_sha256"]
    assert data["split"] == {"method": "stratified", **pipeline.metrics_["rows"]}
    assert data["date_range"]["column"] == "when" and data["date_range"]["first"] < data["date_range"]["last"]
    assert set(card["cleaning"]["columns"]) >= {"x", "colour", "flag", "when", "review"}
    assert card["cleaning"]["columns"]["x"]["filled_with"] == pytest.approx(pipeline.parts.features[0].state()["fill"])
    features = {f["name"]: f for f in card["features"]}
    assert [f["name"] for f in card["features"]] == ["x", "colour", "flag", "when", "review"]
    assert features["x"]["type"] == "number" and features["x"]["encoding"]["normalization"] == "zscore"
    assert features["colour"]["width"] == pipeline.parts.features[1].output_dim
    assert features["review"]["encoding"]["tokenizer"]["min_frequency"] == 1 and "name" not in features["x"]["encoding"]


def test_the_card_holds_the_model_training_metrics_and_the_rest(fitted: tuple[modelmill.Pipeline, Path],
                                                                card: dict[str, Any]) -> None:
    pipeline, _ = fitted
    parts, result = pipeline.parts, pipeline.result_
    assert result is not None
    assert card["model"]["type"] == "mlp" and card["model"]["settings"]["hidden"] == [16]
    assert card["model"]["parameters"] == parts.maker.trained_parameters(parts.model) > 0
    assert card["training"]["epochs_run"] == result.epochs_run and card["training"]["stop_reason"] == result.stop_reason
    assert card["training"]["monitored"] == "roc_auc"
    classes = card["target"]["classes"]
    assert [c["name"] for c in classes] == parts.target.class_names
    assert sum(c["rows"] for c in classes) == pipeline.metrics_["rows"]["train"]
    assert sum(c["share"] for c in classes) == pytest.approx(1.0)
    metrics = {m["name"]: m for m in card["metrics"]["values"]}
    assert card["metrics"]["rows"] == pipeline.metrics_["n_samples"] and card["metrics"]["resamples"] == 200
    for name in ("accuracy", "roc_auc", "log_loss"):
        value = metrics[name]
        assert value["value"] == pytest.approx(pipeline.metrics_[name])
        assert value["low"] <= value["value"] <= value["high"], name
    assert metrics["log_loss"]["better"] == "lower" and metrics["roc_auc"]["better"] == "higher"
    importance = card["importance"]  # the run's permutation importance on the test split, largest first
    assert importance["computed"] and importance["method"] == "permutation on the test split"
    assert [c["column"] for c in importance["columns"]] == list(pipeline.importance_ or {})
    values = [c["importance"] for c in importance["columns"]]
    assert values == sorted(values, reverse=True)
    assert card["privacy"] == {"configured": False, "measures": []}
    assert [limit["kind"] for limit in card["limits"]] == ["small_test_split"]  # 100 test rows


def test_the_card_validates_against_the_published_schema(card: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(card, schema, cls=jsonschema.Draft202012Validator)
    broken = {**card, "metrics": {**card["metrics"], "rows": "many"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_the_published_schema_is_current() -> None:
    assert SCHEMA.read_text() == schema_text(), "regenerate docs/model-card.schema.json (see card.schema_text)"


def test_the_report_opens_with_the_card(fitted: tuple[modelmill.Pipeline, Path]) -> None:
    report = (fitted[1] / "report.html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", report)
    assert headings[:2] == ["Model card", "Metrics"]
    section = report.split('<section class="card">', 1)[1].split("</section>", 1)[0]
    for part in ("Data", "Training", "Test metrics", "Most important columns", "Privacy", "Known limits",
                 "Features and their encodings"):
        assert f"<h3>{part}</h3>" in section, part
    assert "95% interval" in section and "none configured" in section
    assert "not computed" not in section  # the run measured the columns' importance
    assert "<script" not in report and "the test split has 100 rows" in section


def test_a_loaded_bundle_keeps_its_card_and_evaluate_shows_it(fitted: tuple[modelmill.Pipeline, Path],
                                                             card: dict[str, Any], tmp_path: Path) -> None:
    loaded = modelmill.load(fitted[1])
    assert loaded.card_ is not None and loaded.model_card().as_json() == card
    loaded.evaluate(make_frame(120, seed=3), out_dir=tmp_path / "evaluation")
    report = (tmp_path / "evaluation" / "report.html").read_text()
    assert re.findall(r"<h2>(.*?)</h2>", report)[:2] == ["Model card", "Metrics"]


def test_a_bundle_without_a_card_still_loads(fitted: tuple[modelmill.Pipeline, Path], tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(fitted[1], old)
    (old / MODEL_CARD).unlink()
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["files"][MODEL_CARD]
    (old / MANIFEST).write_text(json.dumps(manifest))
    assert read_bundle(old).model_card() is None
    loaded = modelmill.load(old)
    assert loaded.card_ is None
    loaded.evaluate(make_frame(60, seed=4), out_dir=tmp_path / "evaluation")
    assert "Model card" not in (tmp_path / "evaluation" / "report.html").read_text()


def test_importance_fills_the_hook_most_important_first(fitted: tuple[modelmill.Pipeline, Path]) -> None:
    card = fitted[0].model_card().with_importance({"colour": 0.05, "x": 0.3, "flag": -0.01}, method="permutation")
    assert [c.column for c in card.importance.columns] == ["x", "colour", "flag"]
    html = card_section(card)
    box = html.split("<h3>Most important columns</h3>", 1)[1].split("</div>", 1)[0]
    assert box.index("<th>x</th>") < box.index("<th>colour</th>") and "not computed" not in box


def _target(*rows: int) -> TargetCard:
    classes = [{"name": f"c{i}", "rows": n, "share": n / sum(rows)} for i, n in enumerate(rows)]
    return TargetCard.model_validate({"name": "y", "task": "binary" if len(rows) == 2 else "number",
                                      "classes": classes})


def test_each_limit_follows_its_stated_rule() -> None:
    leak = "feature 'copy' determines the target 'y' exactly (it looks like a copy of the target: target leakage)"
    limits = known_limits(_target(950, 50), 4, {"train": 1000, "test": 150}, None, [leak])
    assert [limit.kind for limit in limits] == ["no_test_metrics", "class_imbalance", "leakage"]
    assert "'c1' is 5.0% of the training rows" in limits[1].message
    few = known_limits(_target(900, 100), 20, {"train": 1000, "test": 500}, None, [])
    assert [limit.kind for limit in few] == ["no_test_metrics", "few_rows_per_column"]
    assert "100 rows of the rarest class 'c1' for 20 input columns" in few[1].message
    numbers = known_limits(_target(), 30, {"train": 200, "test": 50}, None, [])
    assert "200 training rows for 30 input columns" in numbers[-1].message


def test_privacy_lists_personal_columns_and_how_the_log_keeps_them() -> None:
    settings = base_config(serving={"log": {"pii": "drop"}})
    settings["features"][1]["pii"] = True
    card = model_card(config=load_config(settings), task="binary", source="data.csv", data_sha256="", cleaning=None,
                      split_rows=None, class_rows={}, widths=None, inputs="raw", parameters=None, training=None,
                      metrics={}, intervals={}, profile={}, warnings=[])
    assert card.privacy.configured and "colour" in card.privacy.measures[0]
    assert "stores them not at all" in card.privacy.measures[0]
    assert card.metrics is None and card.data.date_range is None and card.cleaning is None
    ModelCard.model_validate(card.as_json())
    assert "none configured" not in card_section(card) and "not evaluated" in card_section(card)


def test_bootstrap_intervals_are_repeatable_and_cover_the_estimate() -> None:
    values = np.random.default_rng(0).normal(1.0, 1.0, size=400)

    def stats(rows: np.ndarray) -> dict[str, Any]:
        drawn = values[rows]
        return {"mean": float(drawn.mean()), "rows": int(rows.size),
                "rare": float(drawn.max()) if rows[0] < 100 else None}  # defined on a quarter of the resamples

    first = bootstrap_intervals(stats, values.size, seed=1)
    assert first == bootstrap_intervals(stats, values.size, seed=1)
    low, high = first["mean"]
    assert low < values.mean() < high and high - low == pytest.approx(2 * 1.96 / 20, rel=0.25)
    assert set(first) == {"mean"}  # ints are no metric; one undefined on most resamples has no interval


def test_a_column_warned_as_leakage_is_a_known_limit() -> None:
    frame = make_frame(300).assign(copy=lambda f: f["label"].map({"good": "G", "bad": "B"}))
    config = base_config(training={"epochs": 1, "batch_size": 64, "progress": False})
    config["features"].append({"name": "copy", "type": "category"})
    card = modelmill.Pipeline(config).fit(frame).model_card()
    leaks = [limit.message for limit in card.limits if limit.kind == "leakage"]
    assert len(leaks) == 1 and "'copy'" in leaks[0] and "leakage" in card_section(card)
