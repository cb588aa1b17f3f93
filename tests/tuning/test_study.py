"""A search in this process: trials scored on validation rows only, pruning from the
validation curves, the best config reproduced by a plain training run, and the studies
that must be refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from modelmill.api import Pipeline
from modelmill.config import load_config, parse_config
from modelmill.errors import ConfigError
from modelmill.tuning import TuneSettings, best_config_yaml, run_study, write_outputs
from modelmill.tuning.pruning import FIT_END, FIT_STRIDE
from tests.conftest import base_config, make_frame

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}, {"name": "flag", "type": "binary"}]
GBDT_SPACE = {"model.members.0.learning_rate": {"low": 0.005, "high": 0.5, "log": True},
              "model.members.0.leaves": {"low": 2, "high": 64, "log": True},
              "model.members.0.min_child_samples": {"low": 2, "high": 60}}
TREES = {"type": "ensemble", "members": [{"type": "gbdt"}, {"type": "gbdt", "extra_trees": True}], "folds": 3}


def tiny(folder: Path, **overrides: Any) -> Any:
    make_frame(600).to_csv(folder / "data.csv", index=False)
    settings = {"features": TABLE, "model": TREES,
                "tune": {"trials": 8, "startup_trials": 2, "space": GBDT_SPACE}, **overrides}
    return parse_config(base_config(**settings))


def settings(folder: Path, study: str = "tiny", **kw: Any) -> TuneSettings:
    return TuneSettings(study, folder / "runs" / "tune" / study, **kw)


def test_search_prunes_keeps_validation_only_and_reproduces(tmp_path: Path) -> None:
    config = tiny(tmp_path)
    lines: list[str] = []
    outcome = run_study(config, settings(tmp_path, keep=True), base_dir=tmp_path, progress=lines.append)
    assert outcome.counts["complete"] + outcome.counts["pruned"] == 8
    assert outcome.metric == "roc_auc" and outcome.direction == "maximize"
    values = [t["value"] for t in outcome.trials if t["state"] == "complete"]
    assert outcome.best_value == max(values)
    assert outcome.untuned_value == outcome.trials[0]["value"] <= outcome.best_value
    first = outcome.trials[0]
    assert (first["model.members.0.learning_rate"], first["model.members.0.leaves"]) == (0.05, 31)  # untuned first
    pruned = [t for t in outcome.trials if t["state"] == "pruned"]
    assert pruned, lines  # a learning rate of 0.005 next to 0.5: some fall behind the median
    # trees are pruned between fits (3 folds x 2 members), never within their rounds nor after the last fit
    assert all(t["last step"] % FIT_STRIDE == FIT_END and t["last step"] // FIT_STRIDE < 5 for t in pruned)
    # every kept trial bundle holds its validation score and no test-split metric
    kept = sorted((tmp_path / "runs" / "tune" / "tiny" / "trials").iterdir())
    assert len(kept) == outcome.counts["complete"]
    metrics = json.loads((kept[0] / "metrics.json").read_text())
    assert "valid_roc_auc" in metrics and "roc_auc" not in metrics and "accuracy" not in metrics
    # the best config, written elsewhere, trains to the best trial's validation score
    elsewhere = tmp_path / "out"
    elsewhere.mkdir()
    best = elsewhere / "best.yaml"
    write_outputs(outcome, tmp_path / "runs" / "tune" / "tiny",
                  best_yaml=best_config_yaml(outcome, base_dir=tmp_path, out_dir=elsewhere), best_path=best,
                  final=None)
    again = Pipeline.from_yaml(best).fit()
    assert again.metrics_["valid_roc_auc"] == outcome.best_value
    assert "roc_auc" in again.metrics_  # a plain training run scores the test split
    report = (tmp_path / "runs" / "tune" / "tiny" / "report.html").read_text()
    assert "optimisation history" in report and "Leaderboard" in report
    assert load_config(best).model.members[0].leaves == outcome.best_config["model"]["members"][0]["leaves"]


def test_a_study_of_another_config_or_space_is_refused(tmp_path: Path) -> None:
    config = tiny(tmp_path, tune={"trials": 2, "space": GBDT_SPACE})
    run_study(config, settings(tmp_path, "shared"), base_dir=tmp_path)
    other = parse_config({**base_config(features=TABLE, model=TREES,
                                        tune={"trials": 2, "space": GBDT_SPACE}), "name": "other"})
    with pytest.raises(ConfigError, match="study 'shared' belongs to config 'tiny', not 'other'"):
        run_study(other, settings(tmp_path, "shared"), base_dir=tmp_path)
    narrower = tiny(tmp_path, tune={"trials": 2, "space": {"model.members.0.leaves": {"low": 2, "high": 8}}})
    with pytest.raises(ConfigError, match="started with another search space"):
        run_study(narrower, settings(tmp_path, "shared"), base_dir=tmp_path)


def test_no_validation_rows_is_refused_before_a_study_exists(tmp_path: Path) -> None:
    config = tiny(tmp_path, data={"source": "data.csv", "split": {"method": "stratified", "valid": 0}},
                  model={"type": "gbdt"}, tune={"space": {"model.leaves": {"low": 2, "high": 8}}})
    with pytest.raises(ConfigError, match="set data.split.valid above 0"):
        run_study(config, settings(tmp_path), base_dir=tmp_path)
    assert not (tmp_path / "runs").exists()


def test_a_config_in_shards_is_refused_with_the_way_round_before_a_study_exists(tmp_path: Path) -> None:
    from modelmill.tuning import tune

    config = tiny(tmp_path, data={"source": "data.csv", "shards": True}, model={"type": "mlp"},
                  training={"backend": "ray", "workers": 2}, tune={"trials": 4})
    for backend in ("local", "ray"):  # refused before Ray is imported or a cluster is looked for
        with pytest.raises(ConfigError, match="data.shards: a search reads its table once, on this machine.*"
                                              "Fix: tune on a sample of the table"):
            tune(config, base_dir=tmp_path, runs=tmp_path / "runs", backend=backend)
    assert not (tmp_path / "runs").exists()


def test_optuna_missing_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an import of an absent package raises
    with pytest.raises(ConfigError, match=r"pip install 'modelmill\[tune\]'"):
        run_study(tiny(tmp_path), settings(tmp_path), base_dir=tmp_path)
    assert not (tmp_path / "runs").exists()


def test_a_trial_the_model_refuses_fails_alone_with_its_reason(tmp_path: Path) -> None:
    # a monotone constraint on a category is a valid config that gbdt refuses when it fits
    config = tiny(tmp_path, model={"type": "gbdt"}, tune={"trials": 4, "startup_trials": 1, "space": {
        "model.monotone": {"choices": [{"colour": 1}, {"x": 1}]}, "model.leaves": {"low": 2, "high": 64}}})
    lines: list[str] = []
    outcome = run_study(config, settings(tmp_path), base_dir=tmp_path, progress=lines.append)
    failed = [t for t in outcome.trials if t["state"] == "fail"]
    assert outcome.counts["complete"] >= 1 and failed  # the study goes on past a failed trial
    assert all("monotone" in t["error"] and "colour" in t["error"] for t in failed)
    assert any(line.startswith(f"trial {failed[0]['trial']} fail") and "colour" in line for line in lines)
    assert all(t["model.monotone"] != {"colour": 1} for t in outcome.trials if t["state"] == "complete")


def test_modelmill_tune_from_python_writes_the_best_config_and_scores_it_once(tmp_path: Path) -> None:
    import yaml

    import modelmill

    config = tiny(tmp_path, tune={"trials": 3, "startup_trials": 1, "space": GBDT_SPACE})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))
    result = modelmill.tune(path, runs=tmp_path / "runs")
    assert result.best_path == tmp_path / "runs" / "tune" / "tiny" / "best.yaml" and result.best_path.is_file()
    assert result.report_path.is_file() and result.final is not None and result.repeatable
    assert result.final.metrics_["valid_roc_auc"] == result.outcome.best_value
    assert "roc_auc" in result.final.metrics_  # the test split, read by the best config alone
    summary = json.loads((tmp_path / "runs" / "tune" / "tiny" / "tune.json").read_text())
    assert summary["test_metrics"]["roc_auc"] == result.final.metrics_["roc_auc"]
