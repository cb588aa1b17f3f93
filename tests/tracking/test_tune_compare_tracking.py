"""`tune`, `compare` and `evaluate` tracked in a real MLflow server: a search is a parent run
with a run nested per trial (its values, its curve, its state), a resumed search a new parent
with only its new trials; a comparison a parent with a run per variant; an evaluation a run
linked to the run that logged the bundle. Every figure read back through MLflow's client is
the one in the files the command wrote."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from modelmill.bundle import read_bundle
from modelmill.cli import app
from modelmill.tracking import tags
from modelmill.tracking.tags import TRIAL_STATE
from tests.conftest import base_config, make_frame
from tests.mlflow_server import MlflowServer

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}, {"name": "flag", "type": "binary"}]
SPACE = {"training.optimizer.lr": {"low": 1e-3, "high": 3e-2, "log": True}}


def project(folder: Path, server: MlflowServer, **overrides: Any) -> tuple[Path, str]:
    """A tiny config tracked in its own experiment; returns its path and the experiment's name."""
    folder.mkdir(parents=True, exist_ok=True)
    make_frame(400).to_csv(folder / "data.csv", index=False)
    experiment = f"exp-{uuid.uuid4().hex[:8]}"
    settings: dict[str, Any] = {
        "features": TABLE, "model": {"type": "mlp", "hidden": [8]},
        "training": {"epochs": 4, "batch_size": 64, "threads": 1, "progress": False},
        "tune": {"trials": 3, "startup_trials": 2, "space": SPACE},
        "tracking": {"uri": server.uri, "experiment": experiment}, **overrides}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(base_config(**settings)))
    return path, experiment


def invoke(*args: str) -> str:
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, (done.output, done.exception)
    return " ".join(done.output.split())  # rich wraps long lines at the runner's width


def runs_of(server: MlflowServer, experiment: str) -> list[Any]:
    client = MlflowClient(server.uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    return list(client.search_runs([found.experiment_id], max_results=1000))


def by_action(runs: list[Any], action: str) -> list[Any]:
    return [r for r in runs if r.data.tags.get(tags.ACTION) == action]


def test_tune_is_a_parent_run_with_a_nested_run_per_trial(tmp_path: Path, tracking_server: MlflowServer) -> None:
    config, experiment = project(tmp_path, tracking_server)
    runs = tmp_path / "runs"
    output = invoke("tune", str(config), "--trials", "3", "--no-pruning", "--runs", str(runs))
    assert "mlflow run: http://127.0.0.1" in output
    client = MlflowClient(tracking_server.uri)
    found = runs_of(tracking_server, experiment)
    (parent,) = by_action(found, "tune")
    trials = by_action(found, "trial")
    assert len(trials) == 3 and parent.info.status == "FINISHED" and parent.info.run_name == "tiny"
    assert json.loads(parent.data.params["tune.search_space"])[0]["path"] == "training.optimizer.lr"
    assert parent.data.params["model.type"] == "mlp"  # the flattened config
    folder = runs / "tune" / "tiny"
    summary = json.loads((folder / "tune.json").read_text())
    board = {row["trial"]: row for row in _leaderboard(folder)}
    for trial in trials:
        assert trial.data.tags[tags.PARENT_RUN] == parent.info.run_id
        assert trial.data.tags[TRIAL_STATE] == "COMPLETE" and trial.info.status == "FINISHED"
        number = int(trial.info.run_name.removeprefix("trial "))
        lr = board[number]["training.optimizer.lr"]
        assert float(trial.data.params["training.optimizer.lr"]) == pytest.approx(lr)
        assert trial.data.metrics["final_valid_roc_auc"] == pytest.approx(board[number]["value"])
        curve = client.get_metric_history(trial.info.run_id, "valid_roc_auc")
        assert sorted(m.step for m in curve) == [1, 2, 3, 4]  # the validation curve, live, epoch by epoch
    metrics = parent.data.metrics
    assert metrics["best_valid_roc_auc"] == pytest.approx(summary["best_value"])
    assert metrics["best_trial"] == summary["best_trial"] and metrics["trials_complete"] == 3
    assert metrics["trials_pruned"] == 0 and metrics["trials_failed"] == 0
    # the best config's final fit on the test split: its metrics as the bundle and tune.json hold them
    test_metrics = summary["test_metrics"]
    bundle = read_bundle(next((folder / "best").iterdir()) / "bundle")
    assert parent.data.tags[tags.BUNDLE_SHA256] == bundle.digest
    for key, value in bundle.metrics().items():
        if isinstance(value, float):
            assert metrics[key] == pytest.approx(value), key  # MLflow's latest value: metrics.json's
            assert test_metrics[key] == pytest.approx(value)
    assert {"roc_auc", "accuracy"} <= set(metrics) and metrics["roc_auc"] == pytest.approx(test_metrics["roc_auc"])
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"best.yaml", "leaderboard.csv", "tune.json", "report.html", "bundle"} <= files

    # the same command with a larger budget: a new parent holding the new trial alone
    invoke("tune", str(config), "--trials", "4", "--no-pruning", "--no-final", "--runs", str(runs))
    found = runs_of(tracking_server, experiment)
    parents = by_action(found, "tune")
    assert len(parents) == 2
    (second,) = [p for p in parents if p.info.run_id != parent.info.run_id]
    nested = [r for r in by_action(found, "trial") if r.data.tags[tags.PARENT_RUN] == second.info.run_id]
    assert [r.info.run_name for r in nested] == ["trial 3"]
    assert len(by_action(found, "trial")) == 4  # the first three were not logged again
    assert second.data.metrics["trials_complete"] == 4


def _leaderboard(folder: Path) -> list[dict[str, Any]]:
    import pandas as pd

    return list(pd.read_csv(folder / "leaderboard.csv").to_dict("records"))


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, tracking_server: MlflowServer) -> tuple[Path, str, Path]:
    folder = tmp_path_factory.mktemp("compare")
    config, experiment = project(folder, tracking_server)
    invoke("compare", str(config), "--models", "linear,mlp", "--runs", str(folder / "runs"))
    (out_dir,) = (folder / "runs" / "tiny-compare").iterdir()
    return folder, experiment, out_dir


def test_compare_is_a_parent_run_with_a_nested_run_per_variant(compared: tuple[Path, str, Path],
                                                               tracking_server: MlflowServer) -> None:
    _, experiment, out_dir = compared
    client = MlflowClient(tracking_server.uri)
    found = runs_of(tracking_server, experiment)
    (parent,) = by_action(found, "compare")
    variants = {r.info.run_name: r for r in by_action(found, "variant")}
    assert set(variants) == {"linear", "mlp"} and parent.info.status == "FINISHED"
    assert parent.data.params["compare.variants"] == "linear,mlp"
    rows = {row["variant"]: row for row in json.loads((out_dir / "comparison.json").read_text())}
    for name, run in variants.items():
        row = rows[name]
        assert run.data.tags[tags.PARENT_RUN] == parent.info.run_id and run.info.status == "FINISHED"
        assert run.data.params["model.type"] == name  # its own resolved config
        assert run.data.tags[tags.BUNDLE_SHA256] == read_bundle(row["bundle"]).digest
        for key, value in row["metrics"].items():
            assert run.data.metrics[key] == pytest.approx(value), key
        for key in ("fit_seconds", "latency_ms_per_record", "bundle_mb"):
            assert run.data.metrics[key] == pytest.approx(row[key])
        assert "report.html" in {f.path for f in client.list_artifacts(run.info.run_id)}
    assert client.get_metric_history(variants["mlp"].info.run_id, "valid_loss")  # its epochs, as steps
    assert {"comparison.json", "comparison.csv", "report.html"} <= {f.path for f in client.list_artifacts(
        parent.info.run_id)}


def test_evaluate_is_a_run_linked_to_the_run_of_its_bundle(compared: tuple[Path, str, Path],
                                                           tracking_server: MlflowServer) -> None:
    folder, experiment, out_dir = compared
    rows = {row["variant"]: row for row in json.loads((out_dir / "comparison.json").read_text())}
    bundle = rows["mlp"]["bundle"]
    make_frame(200, seed=3).to_csv(folder / "new.csv", index=False)
    evaluation = folder / "evaluation"
    output = invoke("evaluate", bundle, str(folder / "new.csv"), "-o", str(evaluation), "--tracking-uri",
                    tracking_server.uri)
    assert "mlflow run:" in output
    client = MlflowClient(tracking_server.uri)
    found = runs_of(tracking_server, experiment)
    (run,) = by_action(found, "evaluate")
    (variant,) = [r for r in by_action(found, "variant") if r.info.run_name == "mlp"]
    digest = read_bundle(bundle).digest
    assert run.data.params["bundle_sha256"] == digest and run.data.params["data"].endswith("new.csv")
    assert run.data.tags[tags.PARENT_RUN_ID] == variant.info.run_id
    assert run.data.tags[tags.PARENT_SHA256] == digest
    assert tags.BUNDLE_SHA256 not in run.data.tags  # the run that logged the bundle stays the one found by it
    metrics = json.loads((evaluation / "metrics.json").read_text())
    numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
    assert numbers and all(run.data.metrics[k] == pytest.approx(v) for k, v in numbers.items())
    assert {"metrics.json", "report.html"} <= {f.path for f in client.list_artifacts(run.info.run_id)}


def test_an_encrypted_bundle_is_evaluated_untracked(tmp_path: Path, tracking_server: MlflowServer,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from modelmill.encryption import KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT, generate_key, write_key_file

    monkeypatch.delenv(KEY_ENVIRONMENT, raising=False)
    monkeypatch.delenv(KEY_FILE_ENVIRONMENT, raising=False)
    config, experiment = project(tmp_path, tracking_server, tracking={"experiment": f"enc-{uuid.uuid4().hex[:8]}"})
    experiment = yaml.safe_load(config.read_text())["tracking"]["experiment"]
    write_key_file(tmp_path / "run.key", generate_key())
    key = ["--key-file", str(tmp_path / "run.key")]
    invoke("train", str(config), "--runs", str(tmp_path / "runs"), *key)  # untracked: no URI anywhere
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    invoke("evaluate", str(tmp_path / "runs" / "tiny" / "latest"), str(tmp_path / "data.csv"), "-o",
           str(tmp_path / "evaluation"), *key)
    assert "the bundle is encrypted, so this evaluation is not tracked" in caplog.text
    assert MlflowClient(tracking_server.uri).get_experiment_by_name(experiment) is None  # nothing in clear


def test_trial_runs_end_with_their_state_and_a_search_run_elsewhere_is_logged_after(
        tmp_path: Path, tracking_server: MlflowServer) -> None:
    from modelmill.config import parse_config
    from modelmill.tracking.run import TrackedRun
    from modelmill.tuning.study import TuneOutcome
    from modelmill.tuning.tracked import log_trials_after, trial_run

    path, experiment = project(tmp_path, tracking_server)
    config = parse_config(yaml.safe_load(path.read_text()))
    parent = TrackedRun.start(config, action="tune", run_name="states")
    assert parent is not None

    class Pruned(Exception):
        pass

    for number, error in enumerate([Pruned("pruned after fit 1"), ValueError("a bad value")]):
        with pytest.raises(type(error)), trial_run(parent, config, number, [("training.optimizer.lr", 0.01)],
                                                   metric="roc_auc", pruned=Pruned):
            raise error
    with trial_run(parent, config, 2, [("training.optimizer.lr", 0.02)], metric="roc_auc", pruned=Pruned) as done:
        done.value = 0.75
    # Ray Tune's trials, from the leaderboard rows of the outcome
    records = [{"trial": 0, "state": "complete", "value": 0.8, "seconds": 1.0, "training.optimizer.lr": 0.003},
               {"trial": 1, "state": "fail", "value": None, "seconds": 1.0, "training.optimizer.lr": 0.3,
                "error": "refused"}]
    outcome = TuneOutcome("ray", "roc_auc", "maximize", 0, 0.8, [("training.optimizer.lr", 0.003)], {}, records,
                          {"complete": 1, "fail": 1}, 2.0)
    log_trials_after(parent, config, outcome)
    parent.finish()
    found = by_action(runs_of(tracking_server, experiment), "trial")
    ended = sorted((r.info.run_name, r.data.tags[TRIAL_STATE], r.info.status, r.data.metrics.get("final_valid_roc_auc"),
                    r.data.params["training.optimizer.lr"]) for r in found)
    assert ended == [("trial 0", "COMPLETE", "FINISHED", 0.8, "0.003"), ("trial 0", "PRUNED", "FINISHED", None, "0.01"),
                     ("trial 1", "FAIL", "FAILED", None, "0.01"), ("trial 1", "FAIL", "FAILED", None, "0.3"),
                     ("trial 2", "COMPLETE", "FINISHED", 0.75, "0.02")]
    assert all(r.data.tags[tags.PARENT_RUN] == parent.run_id for r in found)
    assert {r.data.tags.get("modelmill.error") for r in found} == {None, "a bad value", "refused"}
