"""`modelmill train` tracked in a real MLflow server on loopback: params, stepped metrics, tags,
artefacts; the values read back through the MLflow client are those of metrics.json; a server
that cannot be reached, or that stops mid-run, never fails the run; credentials never show."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelmill.api import Pipeline
from modelmill.bundle import read_bundle
from modelmill.config import load_config
from modelmill.training import Callback
from modelmill.training.callbacks import LoopState
from modelmill.tracking import tags
from modelmill.tracking.client import mlflow_client
from modelmill.tracking.session import tracking
from modelmill.tracking.values import flatten
from tests.commands import cli, cli_here
from tests.conftest import base_config, make_frame
from tests.mlflow_server import MlflowServer


def write_project(folder: Path, **overrides: Any) -> Path:
    make_frame().to_csv(folder / "data.csv", index=False)
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(base_config(**overrides)))
    return config


def only_run(server: MlflowServer, experiment: str) -> Any:
    client = mlflow_client(server.uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in MLflow"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="module")
def tracked_train(tracking_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("tracked")
    config = write_project(folder, tracking={"uri": tracking_server.uri, "experiment": "credit-risk"})
    done = cli("train", str(config), cwd=folder)
    assert done.returncode == 0, done.stderr
    bundle = next((folder / "runs" / "tiny").glob("*/bundle"))
    return {"done": done, "bundle": bundle, "run": only_run(tracking_server, "credit-risk"),
            "client": mlflow_client(tracking_server.uri)}


def test_metrics_read_back_are_those_of_metrics_json(tracked_train: dict[str, Any]) -> None:
    run = tracked_train["run"]
    written = json.loads((tracked_train["bundle"] / "metrics.json").read_text())
    numbers = {k: float(v) for k, v in written.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numbers, "metrics.json holds no numbers"
    for key, value in numbers.items():
        assert run.data.metrics[key] == pytest.approx(value, rel=1e-12), key
    assert run.info.status == "FINISHED"


def test_epochs_are_steps(tracked_train: dict[str, Any]) -> None:
    run, client = tracked_train["run"], tracked_train["client"]
    history = json.loads((tracked_train["bundle"] / "history.json").read_text())
    logged = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in logged] == list(range(1, len(history) + 1))
    assert [m.value for m in logged] == pytest.approx([row["train_loss"] for row in history])


def test_params_are_the_resolved_config(tracked_train: dict[str, Any]) -> None:
    params = tracked_train["run"].data.params
    resolved = load_config(tracked_train["bundle"] / "config.yaml")
    expected = flatten(resolved.model_dump(mode="json"))
    assert params == expected
    assert params["training.epochs"] == "5" and params["features.colour.type"] == "category"


def test_tags_link_the_bundle(tracked_train: dict[str, Any]) -> None:
    run_tags = tracked_train["run"].data.tags
    bundle = read_bundle(tracked_train["bundle"])
    assert run_tags[tags.BUNDLE_SHA256] == bundle.digest
    assert run_tags[tags.DATA_SHA256] == bundle.manifest["data_sha256"]
    assert run_tags[tags.CONFIG_SHA256] == bundle.manifest["config_sha256"]
    assert run_tags[tags.ACTION] == "train" and run_tags[tags.LINEAGE_ACTION] == "trained"
    assert run_tags[tags.RUN_DIR] == str(tracked_train["bundle"].parent.resolve())
    assert tracked_train["run"].info.run_id in tracked_train["done"].stdout  # the run's page is printed


def test_artefacts_are_the_report_plots_and_bundle(tracked_train: dict[str, Any], tmp_path: Path) -> None:
    run, client = tracked_train["run"], tracked_train["client"]
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert top == {"report.html", "bundle"}  # the report on top; the plots, metrics and the rest in bundle/
    inside = {a.path for a in client.list_artifacts(run.info.run_id, "bundle")}
    assert {"bundle/plots", "bundle/metrics.json", "bundle/manifest.json", "bundle/cleaning_report.json"} <= inside
    import mlflow

    fetched = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="bundle",
                                                       dst_path=str(tmp_path), tracking_uri=client.tracking_uri))
    assert read_bundle(fetched).digest == read_bundle(tracked_train["bundle"]).digest  # every file, intact


def test_an_unreachable_server_is_a_warning_and_the_run_completes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # in this process: test_credentials_never_show runs `modelmill train` against a dead server in its own
    with_dead_server = write_project(tmp_path, tracking={"uri": "http://127.0.0.1:9", "experiment": "gone"})
    code, _, said = cli_here("train", str(with_dead_server), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, said
    assert "cannot be reached" in said and "untracked" in said
    assert list((tmp_path / "runs" / "tiny").glob("*/bundle/manifest.json"))


class StopServerAt(Callback):
    """Stops the tracking server when epoch ``epoch`` ends: the server going away mid-run."""

    def __init__(self, server: MlflowServer, epoch: int) -> None:
        self.server, self.epoch = server, epoch

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        if int(row.get("epoch", state.epoch)) == self.epoch:
            self.server.stop()


def test_a_server_stopped_mid_run_loses_only_what_came_after(own_tracking_server: MlflowServer, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    make_frame().to_csv(tmp_path / "data.csv", index=False)
    config = load_config(base_config(tracking={"uri": own_tracking_server.uri, "experiment": "cut"},
                                     training={"epochs": 6, "batch_size": 64, "progress": False}))
    caplog.set_level(logging.WARNING, logger="modelmill")
    with tracking(config, action="train", base_dir=tmp_path) as tracked:
        assert tracked is not None and tracked.run_id is not None
        tracked.flush_seconds = 0.0  # every epoch sent as it ends, so the cut falls between two epochs
        pipeline = Pipeline(config, base_dir=tmp_path,
                            callbacks=[tracked.callback(), StopServerAt(own_tracking_server, 3)])
        pipeline.fit()
        bundle = pipeline.save(tmp_path / "bundle")
        tracked.log_bundle(read_bundle(bundle), whole=True)
    assert read_bundle(bundle).metrics()["accuracy"] > 0  # the run finished and wrote its bundle
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "stopped answering" in warnings
    assert "not logged" in warnings and "metric values" in warnings and "artefact" in warnings
    own_tracking_server.start()  # the same store: what was logged before the cut is there
    client = mlflow_client(own_tracking_server.uri)
    steps = [m.step for m in client.get_metric_history(tracked.run_id, "train_loss")]
    assert steps[:3] == [1, 2, 3] and len(steps) < 6


def test_credentials_never_show(tracking_server: MlflowServer, tmp_path: Path) -> None:
    password = "pw-Zq81-never-shown"
    config = write_project(tmp_path, tracking={"experiment": "secret-team"})
    env = {"MLFLOW_TRACKING_URI": tracking_server.uri.replace("http://", f"http://alice:{password}@"),
           "MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": password}
    done = cli("train", str(config), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    for file in (tmp_path / "runs").rglob("*"):
        if file.is_file():
            assert password.encode() not in file.read_bytes(), file
    run = only_run(tracking_server, "secret-team")
    assert password not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    # the same server, gone: the warning names it without the password
    env["MLFLOW_TRACKING_URI"] = f"http://alice:{password}@127.0.0.1:9"
    done = cli("train", str(config), cwd=tmp_path, env=env)
    assert done.returncode == 0 and "cannot be reached" in done.stderr
    assert password not in done.stdout + done.stderr


def test_bad_tracking_settings_are_clear_errors(tmp_path: Path) -> None:
    wrong_scheme = write_project(tmp_path, tracking={"uri": "ftp://tracking.example.com"})
    done = cli("train", str(wrong_scheme), cwd=tmp_path)
    assert done.returncode == 2 and "tracking.uri" in done.stderr and "http://" in done.stderr
    assert "Traceback" not in done.stderr
    with_password = write_project(tmp_path, tracking={"uri": "http://bob:hunter22@127.0.0.1:5000"})
    done = cli("train", str(with_password), cwd=tmp_path)
    assert done.returncode == 2 and "MLFLOW_TRACKING_PASSWORD" in done.stderr and "hunter22" not in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_an_encrypted_run_is_not_tracked_in_clear(tmp_path: Path) -> None:
    config = write_project(tmp_path, tracking={"uri": "http://127.0.0.1:9"})
    done = cli("train", str(config), "--encrypt", cwd=tmp_path,
               env={"MODELMILL_ENCRYPTION_KEY": "a" * 64})
    assert done.returncode == 2 and "encrypted run cannot be tracked" in done.stderr
    assert not list((tmp_path / "runs").rglob("manifest.json"))


def test_flatten_names_features_and_keeps_lists_as_json() -> None:
    flat = flatten({"a": {"b": 1, "c": [1, 2]}, "features": [{"name": "x", "type": "number"}], "s": "t"})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "features.x.type": "number", "s": "t"}


def test_a_forecast_run_is_tracked_like_any_other(tracking_server: MlflowServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.serving.forecast_bundles import shop_config, shop_frame

    shop_frame().to_csv(tmp_path / "sales.csv", index=False)
    config = tmp_path / "shops.yaml"
    config.write_text(yaml.safe_dump({**shop_config(), "tracking": {"uri": tracking_server.uri,
                                                                    "experiment": "shops-forecast"}}))
    code, _, said = cli_here("train", str(config), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, said
    bundle = next((tmp_path / "runs" / "shops").glob("*/bundle"))
    run = only_run(tracking_server, "shops-forecast")
    assert run.data.tags[tags.TASK] == "forecast" and run.data.tags[tags.BUNDLE_SHA256] == read_bundle(bundle).digest
    written = json.loads((bundle / "metrics.json").read_text())
    numbers = {k: float(v) for k, v in written.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numbers and all(run.data.metrics[k] == pytest.approx(v, rel=1e-12) for k, v in numbers.items())
    assert run.data.params["series.horizon"] == "7"


def test_names_mlflow_refuses_are_renamed_and_a_refused_request_loses_only_itself(
        tracking_server: MlflowServer, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(base_config(tracking={"uri": tracking_server.uri, "experiment": "odd-names"}))
    caplog.set_level(logging.WARNING, logger="modelmill")
    with tracking(config, action="train") as tracked:
        assert tracked is not None
        tracked.log_metrics({"recall@10": 0.5, "weight (kg)": 2.0, "accuracy": 0.9})
        tracked.log_params({"training.epochs": "999"})  # a param's value never changes: MLflow refuses this one
        tracked.log_metrics({"ndcg@10": 0.25})
        assert tracked.down is None and tracked.lost == {"params": 1}
    run = mlflow_client(tracking_server.uri).get_run(tracked.run_id)
    assert run.data.metrics == {"recall_at_10": 0.5, "weight _kg_": 2.0, "accuracy": 0.9, "ndcg_at_10": 0.25}
    assert run.data.params["training.epochs"] == "5" and run.info.status == "FINISHED"
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "refused the params" in warnings and "not logged" in warnings and "1 params" not in warnings


def test_children_of_a_run_whose_server_went_away_are_not_tried_again(
        own_tracking_server: MlflowServer, caplog: pytest.LogCaptureFixture) -> None:
    from modelmill.tracking.run import TrackedRun

    config = load_config(base_config(tracking={"uri": own_tracking_server.uri, "experiment": "gone-mid-tune"}))
    caplog.set_level(logging.WARNING, logger="modelmill")
    with tracking(config, action="tune") as parent:
        assert parent is not None and parent.run_id is not None
        first = TrackedRun.start(config, action="trial", run_name="trial 0", parent=parent)
        assert first is not None and first.run_id is not None
        own_tracking_server.stop()
        first.log_metrics({"valid_roc_auc": 0.8})
        first.finish()
        second = TrackedRun.start(config, action="trial", run_name="trial 1", parent=parent)
        assert second is not None and second.run_id is None and second.down is not None
        second.log_metrics({"valid_roc_auc": 0.9})
        second.finish()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("stopped answering" in w for w in warnings) == 2  # when it went, and the account at the end
    assert "of nested runs" in warnings[-1] and "cannot be reached" not in " ".join(warnings)
    assert "the run of nested runs" not in warnings[-1]  # the second trial was never tried: nothing of it was lost


def test_a_trial_that_finds_the_server_gone_spares_the_next_ones(own_tracking_server: MlflowServer) -> None:
    from modelmill.tracking.run import TrackedRun

    config = load_config(base_config(tracking={"uri": own_tracking_server.uri, "experiment": "gone-at-a-trial"}))
    with tracking(config, action="tune") as parent:
        assert parent is not None and parent.run_id is not None
        own_tracking_server.stop()
        first = TrackedRun.start(config, action="trial", run_name="trial 0", parent=parent)
        assert first is not None and first.run_id is None  # its opening failed ...
        assert parent.down is not None  # ... and told the parent
        second = TrackedRun.start(config, action="trial", run_name="trial 1", parent=parent)
        assert second is not None and second._starting is None  # never tried against the dead server
        for trial in (first, second):
            trial.finish()
    assert parent.lost.get("the run of nested runs") == 1
