"""The auto and ensemble model types: candidates fitted on k folds or the validation split,
greedy weights on held-out predictions, every member a model of its own in the bundle,
predictions identical after loading (frame path, record fast path, REST service), and the
clear errors of a time budget too small to fit one candidate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import modelmill
from modelmill.bundle import read_bundle
from modelmill.config import parse_config
from modelmill.features import build_features, build_target
from modelmill.models.ensemble import suitable_candidates
from modelmill.training.ensemble import FOLD_ROWS, select_weights
from modelmill.training.fitting import FitSettings
from tests.conftest import base_config, make_frame
from tests.serving.conftest import live_server

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"},
         {"name": "flag", "type": "binary"}, {"name": "when", "type": "date"}]
QUICK = {"epochs": 3, "batch_size": 64, "progress": False}


def auto_config(model: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    return base_config(features=list(TABLE), model={"type": "auto", **(model or {})}, training=dict(QUICK),
                       **changes)


def test_auto_fits_the_table_candidates_on_folds_and_round_trips(tmp_path: Path) -> None:
    pipeline = modelmill.Pipeline(auto_config()).fit(make_frame(500))
    result = pipeline.result_
    assert result is not None
    names = [m["name"] for m in result.members]
    assert names == ["gbdt", "gbdt_xt", "gbdt_slow", "linear", "mlp"]  # what suits a table of numbers and categories
    assert all(m["folds"] == 5 and m["status"] == "fitted" for m in result.members)  # 500 rows < FOLD_ROWS
    weights = {m["name"]: m["weight"] for m in result.members}
    assert abs(sum(weights.values()) - 1) < 1e-9 and max(weights.values()) > 0
    # every row of train + valid has an out-of-fold prediction to choose on
    rows = pipeline.metrics_["rows"]
    assert result.held_out_raw is not None and len(result.held_out_raw) == rows["train"] + rows["valid"]
    candidates = pipeline.metrics_["candidates"]
    assert all(0.5 < c["test"] <= 1 for c in candidates) and pipeline.metrics_["roc_auc"] > 0.85

    bundle = read_bundle(pipeline.save(tmp_path / "bundle"))
    kept = [name for name, weight in weights.items() if weight > 0]
    assert set(bundle.models) == {"model"} | {f"{name}-{fold}" for name in kept for fold in range(1, 6)}
    if "gbdt" in kept:
        assert bundle.model("gbdt-3").type == "gbdt" and "models/gbdt-3/trees.txt" in bundle.files
    described = json.loads(bundle.artifact("ensemble.json"))
    assert {m["name"]: m["weight"] for m in described["members"]} == pytest.approx(weights)
    new = make_frame(120, seed=9)
    loaded = modelmill.load(bundle.path)
    pd.testing.assert_frame_equal(loaded.predict(new), pipeline.predict(new), check_exact=True)
    # a few records take the path without pandas, with the encoded and the raw view side by side
    records = new[[f["name"] for f in TABLE]].head(5).to_dict("records")
    fast = loaded.parts.predict_records(records)
    slow = loaded.parts.predict(new.head(5))
    np.testing.assert_array_equal(fast.proba, slow.proba)
    # the loaded ensemble computes only the inputs its kept members take
    trees = {"gbdt", "gbdt_xt", "gbdt_slow"}
    views = {"raw" if name in trees else "encoded" for name in kept}
    assert loaded.parts.maker.view == ("both" if len(views) > 1 else views.pop())


def test_holdout_above_the_fold_rows_and_gbdt_scores_before_its_refit() -> None:
    config = auto_config({"candidates": ["gbdt", "linear"], "folds": 0})
    pipeline = modelmill.Pipeline(config).fit(make_frame(400))
    result = pipeline.result_
    assert result is not None and [m["folds"] for m in result.members] == [1, 1]
    rows = pipeline.metrics_["rows"]
    assert result.held_out_raw is not None and len(result.held_out_raw) == rows["valid"]
    assert FOLD_ROWS == 10_000  # the documented switch from folds to the validation split


def test_an_explicit_ensemble_names_repeated_types_and_picks_the_useful_member() -> None:
    frame = make_frame(500)
    config = base_config(features=list(TABLE), training=dict(QUICK), model={
        "type": "ensemble", "members": [{"type": "gbdt"}, {"type": "gbdt", "trees": 1, "leaves": 2}],
        "folds": 3})
    pipeline = modelmill.Pipeline(config).fit(frame)
    assert pipeline.result_ is not None
    weights = {m["name"]: m["weight"] for m in pipeline.result_.members}
    assert set(weights) == {"gbdt", "gbdt_2"} and weights["gbdt"] > weights["gbdt_2"]  # one stump is useless


def test_greedy_selection_weighs_by_held_out_score() -> None:
    generator = torch.Generator().manual_seed(0)
    truth = (torch.rand(2000, generator=generator) < 0.5).float()
    signal = (truth * 2 - 1) * 1.5
    good = (signal + torch.randn(2000, generator=generator)).unsqueeze(1)
    other = (signal + torch.randn(2000, generator=generator)).unsqueeze(1)  # as good, independent errors
    noise = torch.randn(2000, 1, generator=generator)
    config = parse_config(base_config())
    target = build_target(config).fit(pd.Series(["good", "bad"] * 10))

    def scorer(raw: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        return {"roc_auc": float(roc_auc_score(y.numpy(), raw.reshape(-1).numpy()))}

    settings = FitSettings(config.training, target, scorer, "roc_auc", "max")
    weights = select_weights({"good": good, "other": other, "noise": noise}, truth, settings, rounds=20)
    assert weights["noise"] <= 0.1 < min(weights["good"], weights["other"])  # noise helps by chance at most
    assert sum(weights.values()) == pytest.approx(1)


def test_candidates_follow_the_columns() -> None:
    table = build_features(parse_config(auto_config()))
    text = build_features(parse_config(base_config()))  # has a text column
    assert suitable_candidates(table, None) == ["gbdt", "gbdt_xt", "gbdt_slow", "linear", "mlp"]
    assert suitable_candidates(text, None) == ["tfidf_logistic", "mlp", "linear"]


def test_auto_with_a_text_column_fits_tfidf_and_the_encoder_on_the_validation_split() -> None:
    config = base_config(model={"type": "auto"}, training=dict(QUICK))
    pipeline = modelmill.Pipeline(config).fit(make_frame(300))
    assert pipeline.result_ is not None
    assert [(m["name"], m["folds"]) for m in pipeline.result_.members] == [
        ("tfidf_logistic", 1), ("mlp", 1), ("linear", 1)]  # text: never k folds


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelmill.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_time_budget_too_small_for_one_candidate_says_how_long_one_takes(tmp_path: Path) -> None:
    make_frame(500).to_csv(tmp_path / "data.csv", index=False)
    config = auto_config({"time_budget": 0.001})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = cli("train", "c.yaml", "--runs", "runs", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert "model.time_budget" in message and "too small" in message and "took" in message
    assert not list((tmp_path / "runs").glob("*/*/bundle"))  # nothing half-written


def test_served_auto_bundle_answers_like_the_pipeline(tmp_path: Path) -> None:
    pipeline = modelmill.Pipeline(auto_config({"candidates": ["gbdt", "linear"]})).fit(make_frame(300))
    path = pipeline.save(tmp_path / "models" / "1")
    records = make_frame(4, seed=3)[[f["name"] for f in TABLE]].to_dict("records")
    expected = pipeline.parts.predict_records(records)
    with live_server(tmp_path / "models") as server:
        response = httpx.post(f"{server.url}/v1/predict", json={"instances": records}, timeout=30)
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert [a["label_predicted"] for a in answers] == list(expected.labels)
    assert [a["label_probability_good"] for a in answers] == pytest.approx(list(expected.proba[:, 1]), abs=1e-6)
    assert path.exists()


def test_candidates_past_the_time_budget_are_skipped_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from modelmill.training import ensemble

    ticks = iter(range(10_000))  # a clock that advances one second per reading
    monkeypatch.setattr(ensemble, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    config = auto_config({"candidates": ["gbdt", "linear", "mlp"], "time_budget": 3})
    pipeline = modelmill.Pipeline(config).fit(make_frame(300))
    assert pipeline.result_ is not None
    status = {m["name"]: m["status"] for m in pipeline.result_.members}
    assert status["gbdt"] == "fitted"  # the first is always fitted
    assert status["linear"].startswith("skipped: the time budget of 3 s was spent")
    assert status["mlp"].startswith("skipped")
    assert [m["name"] for m in pipeline.metrics_["candidates"] if "test" in m] == ["gbdt"]


def test_an_explicit_ensemble_has_no_budget_and_fits_every_member() -> None:
    config = base_config(features=list(TABLE), training=dict(QUICK), model={
        "type": "ensemble", "members": [{"type": "linear"}, {"type": "gbdt"}], "folds": 0})
    pipeline = modelmill.Pipeline(config).fit(make_frame(300))
    assert pipeline.result_ is not None and all(m["status"] == "fitted" for m in pipeline.result_.members)


def test_tfidf_scores_before_it_refits_on_the_validation_rows() -> None:
    config = base_config(model={"type": "tfidf_logistic"}, training=dict(QUICK))
    pipeline = modelmill.Pipeline(config).fit(make_frame(300))
    result = pipeline.result_
    assert result is not None and "then again on the training and validation rows" in result.stop_reason
    assert result.held_out_raw is not None and len(result.held_out_raw) == pipeline.metrics_["rows"]["valid"]
    once = modelmill.Pipeline(base_config(model={"type": "tfidf_logistic", "refit": False},
                                          training=dict(QUICK))).fit(make_frame(300))
    assert once.result_ is not None and once.result_.stop_reason == "fitted by the solver"
    assert once.result_.held_out_raw is not None
    new = make_frame(50, seed=5)
    refitted, single = pipeline.predict(new), once.predict(new)
    assert not np.allclose(refitted["label_probability_good"], single["label_probability_good"])  # more rows learned
