"""Derived bundles are MLflow runs too: ``modelmill compress`` of a tracked bundle, with
MLFLOW_TRACKING_URI set, logs the new bundle as a ``compress`` run whose tags link it to the
train run of its parent (PARENT_RUN_ID, PARENT_SHA256), so that MLflow shows the lineage
``modelmill lineage`` prints; without MLFLOW_TRACKING_URI (the bundle's own tracking.uri is
never used by a command that reads a bundle) it logs nothing and still works. A closed loop's
challenger is a ``retrain`` run: its epochs live, its bundle linked to the champion's run, the
decision as a tag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from modelmill.bundle import read_bundle
from modelmill.tracking import tags
from modelmill.tracking.client import mlflow_client
from tests.commands import cli, cli_here, run_main
from tests.conftest import base_config, make_frame
from tests.mlflow_server import MlflowServer
from tests.retraining.conftest import Loop, adult_loop  # noqa: F401  (the closed loop's fixture)

EXPERIMENT = "derived-lineage"


def runs_of(server: MlflowServer) -> list[Any]:
    client = mlflow_client(server.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no experiment {EXPERIMENT!r} in MLflow"
    return list(client.search_runs([experiment.experiment_id]))


@pytest.fixture(scope="module")
def trained(tracking_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny bundle whose train run is in MLflow (the config's tracking.uri): `modelmill train` in
    this process (tests/tracking/test_train_tracking.py runs it in its own)."""
    folder = tmp_path_factory.mktemp("derived")
    make_frame().to_csv(folder / "data.csv", index=False)
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(base_config(tracking={"uri": tracking_server.uri, "experiment": EXPERIMENT})))
    assert run_main(["train", str(config), "--runs", str(folder / "runs")]) == 0
    (run,) = runs_of(tracking_server)
    return {"folder": folder, "bundle": next((folder / "runs" / "tiny").glob("*/bundle")), "run": run}


def test_a_compressed_bundle_is_a_run_linked_to_its_parents_run(tracking_server: MlflowServer, trained: dict[str, Any],
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder, parent = trained["folder"], read_bundle(trained["bundle"])
    out = folder / "half"
    env = {"MLFLOW_TRACKING_URI": tracking_server.uri}
    done = cli("compress", str(trained["bundle"]), "--method", "float16", "-o", str(out), cwd=folder, env=env)
    assert done.returncode == 0, done.stderr  # the real command, in its own process
    derived = read_bundle(out)
    (run,) = [r for r in runs_of(tracking_server) if r.data.tags.get(tags.ACTION) == "compress"]
    run_tags = run.data.tags
    assert run_tags[tags.BUNDLE_SHA256] == derived.digest
    assert run_tags[tags.PARENT_SHA256] == parent.digest
    assert run_tags[tags.PARENT_RUN_ID] == trained["run"].info.run_id  # MLflow's link to the train run
    assert run_tags[tags.LINEAGE_ACTION] == "compressed"
    assert run.info.run_name == "compress float16" and run.info.status == "FINISHED"
    assert run.data.params["method"] == "float16" and run.data.params["parent_sha256"] == parent.digest
    written = json.loads((out / "metrics.json").read_text())
    assert run.data.metrics["accuracy"] == pytest.approx(written["accuracy"])
    assert "after.size_bytes" in run.data.metrics and "gate.drop" in run.data.metrics
    client = mlflow_client(tracking_server.uri)
    inside = {a.path for a in client.list_artifacts(run.info.run_id, tags.BUNDLE_ARTIFACTS)}
    assert "bundle/manifest.json" in inside  # the derived bundle itself: `modelmill register` can use the run
    assert run.info.run_id in done.stdout  # the run's page is printed

    # `modelmill lineage` finds both runs: the train run for the parent, the compress run for the bundle
    code, shown, said = cli_here("lineage", str(out), "--json", cwd=folder, env=env, capsys=capsys,
                                 monkeypatch=monkeypatch)
    assert code == 0, said
    document = json.loads(shown)
    assert document["mlflow"] is True
    first, second = document["chain"]
    assert (first["sha256"], first["mlflow"]["run"]["run_id"]) == (parent.digest, trained["run"].info.run_id)
    assert (second["sha256"], second["mlflow"]["run"]["run_id"]) == (derived.digest, run.info.run_id)
    assert second["mlflow"]["run"]["parent_run_id"] == trained["run"].info.run_id


def test_an_exported_bundle_is_a_run_linked_to_its_parents_run(tracking_server: MlflowServer, trained: dict[str, Any],
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = trained["folder"]
    code, _, said = cli_here("export", str(trained["bundle"]), "-o", str(folder / "graph"), cwd=folder,
                             env={"MLFLOW_TRACKING_URI": tracking_server.uri}, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, said
    (run,) = [r for r in runs_of(tracking_server) if r.data.tags.get(tags.ACTION) == "export"]
    assert run.data.tags[tags.BUNDLE_SHA256] == read_bundle(folder / "graph").digest
    assert run.data.tags[tags.PARENT_RUN_ID] == trained["run"].info.run_id
    assert (run.info.run_name, run.data.params["format"], run.data.tags[tags.LINEAGE_ACTION]) == (
        "export onnx", "onnx", "exported")
    assert "check.max_abs_diff" in run.data.metrics


def test_without_mlflow_tracking_uri_compress_logs_nothing(tracking_server: MlflowServer, trained: dict[str, Any],
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    before = {r.info.run_id for r in runs_of(tracking_server)}
    folder = trained["folder"]
    # the bundle's config names the tracking server; a command that reads a bundle never goes there by itself
    code, shown, said = cli_here("compress", str(trained["bundle"]), "--method", "float16", "-o",
                                 str(folder / "untracked"), cwd=folder, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, said
    assert read_bundle(folder / "untracked").lineage.action == "compressed"
    assert {r.info.run_id for r in runs_of(tracking_server)} == before
    assert "mlflow run" not in shown


def test_a_wrong_tracking_uri_fails_before_any_work(trained: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder = trained["folder"]
    code, _, said = cli_here("compress", str(trained["bundle"]), "--method", "float16", "-o", str(folder / "never"),
                             cwd=folder, env={"MLFLOW_TRACKING_URI": "ftp://example.org/mlflow"}, capsys=capsys,
                             monkeypatch=monkeypatch)
    assert code == 2
    assert "tracking URI" in said and "Traceback" not in said
    assert not (folder / "never").exists()


def test_a_retrained_challenger_is_a_run_linked_to_its_champions_run(
        tracking_server: MlflowServer, adult_loop: Loop, tmp_path: Path) -> None:  # noqa: F811
    from modelmill.retraining.retrain import retrain
    from modelmill.tracking.session import tracking
    from tests.monitoring.filling import fill_log

    loop = adult_loop.copy(tmp_path)
    config = yaml.safe_load((loop.folder / "adult.yaml").read_text())
    config["tracking"] = {"uri": tracking_server.uri, "experiment": "derived-retrain"}
    config_path = loop.folder / "tracked.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    champion = read_bundle(loop.models / "1")
    with tracking(champion.task_config(), action="train", uri=tracking_server.uri) as logged:  # the champion's run
        assert logged is not None
        logged.log_bundle(champion, files=False)
    log_url = f"sqlite:///{loop.folder / 'monitor.db'}"
    fill_log(log_url, loop.models, loop.traffic.iloc[:400], labels=True)

    decision = retrain(config_path, log_url=log_url, versions=loop.models, runs=tmp_path / "runs")
    assert decision.outcome in ("promoted", "refused") and decision.bundle is not None
    client = mlflow_client(tracking_server.uri)
    experiment = client.get_experiment_by_name("derived-retrain")
    (run,) = client.search_runs([experiment.experiment_id])
    run_tags = run.data.tags
    assert (run_tags[tags.ACTION], run_tags[tags.DECISION], run.info.status) == ("retrain", decision.outcome, "FINISHED")
    assert run_tags[tags.BUNDLE_SHA256] == read_bundle(decision.bundle).digest
    assert run_tags[tags.PARENT_SHA256] == champion.digest and run_tags[tags.LINEAGE_ACTION] == "retrained"
    assert run_tags[tags.PARENT_RUN_ID] == logged.run_id
    epochs = client.get_metric_history(run.info.run_id, "train_loss")
    history = json.loads((decision.bundle / "history.json").read_text())
    assert [m.step for m in epochs] == list(range(1, len(history) + 1))  # logged live, one step an epoch
    assert run.data.metrics["decision.recent.challenger"] == pytest.approx(decision.figures["recent"]["challenger"])


def test_a_refreshed_bundle_is_a_run_linked_to_its_parents_run(tracking_server: MlflowServer, tmp_path: Path) -> None:
    from modelmill.recommending.pipeline import RecommendPipeline
    from modelmill.tracking.session import tracking
    from tests.recommending.test_pipeline import config, table

    parent = read_bundle(RecommendPipeline(config(tracking={"experiment": "derived-refresh"})).fit(table())
                         .save(tmp_path / "shop"))
    with tracking(parent.task_config(), action="train", uri=tracking_server.uri) as logged:  # the parent's run
        assert logged is not None
        logged.log_bundle(parent, files=False)
    pd.DataFrame({"uid": ["u0", "newcomer"], "iid": [29, 0], "stars": [5, 5], "when": [1, 2]}).to_csv(
        tmp_path / "new.csv", index=False)
    done = cli("recommend", "refresh", "shop", "new.csv", "-o", "refreshed", cwd=tmp_path,
               env={"MLFLOW_TRACKING_URI": tracking_server.uri})
    assert done.returncode == 0, done.stderr
    client = mlflow_client(tracking_server.uri)
    experiment = client.get_experiment_by_name("derived-refresh")
    (run,) = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags[tags.ACTION] == "refresh"]
    assert run.data.tags[tags.BUNDLE_SHA256] == read_bundle(tmp_path / "refreshed").digest
    assert run.data.tags[tags.PARENT_RUN_ID] == logged.run_id
    assert (run.info.run_name, run.data.params["data"]) == ("refresh new.csv", "new.csv")
    assert run.data.metrics["users_added"] == 1


def test_an_encrypted_bundle_is_not_tracked_in_clear(tracking_server: MlflowServer, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill.api import Pipeline

    key = "b" * 64
    make_frame().to_csv(tmp_path / "data.csv", index=False)
    raw = base_config(tracking={"experiment": "derived-encrypted"})
    Pipeline(raw, base_dir=tmp_path).fit().save(tmp_path / "sealed", key=key)
    env = {"MLFLOW_TRACKING_URI": tracking_server.uri, "MODELMILL_ENCRYPTION_KEY": key}
    code, _, said = cli_here("compress", "sealed", "--method", "float16", "-o", "half", cwd=tmp_path, env=env,
                             capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, said
    assert "the bundle is encrypted, so this compress is not tracked" in said
    assert (tmp_path / "half" / "manifest.json").is_file()
    assert mlflow_client(tracking_server.uri).get_experiment_by_name("derived-encrypted") is None  # nothing sent
