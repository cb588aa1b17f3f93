"""``modelmill compare``: several variants of one config on the same split, one table, the
table in JSON, CSV and an HTML report, and every variant's bundle ready to serve."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

import modelmill
from tests.e2e.test_cli import cli, expect_user_error, nothing_written
from tests.text_data import make_reviews, text_config, tiny_sentence_model


def reviews_project(folder: Path) -> Path:
    make_reviews(240).to_csv(folder / "reviews.csv", index=False)
    config = text_config()
    config["training"] = {**config["training"], "epochs": 3}  # type: ignore[dict-item]
    config["compare"] = {"pretrained_model": str(tiny_sentence_model(folder / "encoder")), "finetune_epochs": 1, "pool_layers": 2, "head_epochs": 2,
                         "latency_rows": 50}
    path = folder / "reviews.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def test_compare_trains_every_variant_on_the_same_split(tmp_path: Path) -> None:
    config = reviews_project(tmp_path)
    done = cli("compare", str(config), "--models", "tfidf_lr,bag,frozen,finetune", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ["tfidf_lr", "bag", "frozen", "finetune", "accuracy", "s/epoch", "ms/record", "MB"]:
        assert name in done.stdout, name
    (out_dir,) = (tmp_path / "runs" / "reviews-compare").iterdir()
    rows = json.loads((out_dir / "comparison.json").read_text())
    assert [row["variant"] for row in rows] == ["tfidf_lr", "bag", "frozen", "finetune"]
    test_rows = {modelmill.load(row["bundle"]).metrics_["rows"]["test"] for row in rows}
    assert test_rows == {60}  # the same test split for all
    by_name = {row["variant"]: row for row in rows}
    assert by_name["finetune"]["epochs"] == 1 and by_name["bag"]["epochs"] == 3
    assert by_name["frozen"]["prepare_seconds"] > 0  # the embeddings, computed before the epochs
    assert by_name["frozen"]["trainable_parameters"] < by_name["finetune"]["trainable_parameters"]
    assert by_name["tfidf_lr"]["trainable_parameters"] > 0
    for row in rows:
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0
        assert row["latency_ms_per_record"] > 0 and row["bundle_mb"] > 0
        predictions = modelmill.load(row["bundle"]).predict(pd.read_csv(tmp_path / "reviews.csv").head(5))
        assert len(predictions) == 5
    table = pd.read_csv(out_dir / "comparison.csv")
    assert table["variant"].tolist() == ["tfidf_lr", "bag", "frozen", "finetune"]
    report = (out_dir / "report.html").read_text()
    assert "comparison of model variants" in report and "general encoder, frozen" in report


def test_compare_defaults_come_from_the_config_and_typos_fail_first(tmp_path: Path) -> None:
    config = reviews_project(tmp_path)
    typo = cli("compare", str(config), "--models", "tfidf_lr,bagg", cwd=tmp_path)
    expect_user_error(typo, "unknown comparison variant 'bagg'", "valid: bag")
    assert nothing_written(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["compare"]["models"] = ["tfidf_lr", "linear"]
    config.write_text(yaml.safe_dump(raw, allow_unicode=True))
    done = cli("compare", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (out_dir,) = (tmp_path / "runs" / "reviews-compare").iterdir()
    assert [row["variant"] for row in json.loads((out_dir / "comparison.json").read_text())] == ["tfidf_lr", "linear"]


def test_a_text_variant_on_a_table_without_text_is_a_clear_error(tmp_path: Path) -> None:
    from tests.conftest import base_config, make_frame

    make_frame(100).to_csv(tmp_path / "data.csv", index=False)
    config = base_config(features=[{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}])
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    done = cli("compare", str(tmp_path / "tiny.yaml"), "--models", "frozen", cwd=tmp_path)
    expect_user_error(done, "changes the text encoder", "has no text feature")
