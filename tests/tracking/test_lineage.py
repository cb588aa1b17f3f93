"""`modelmill lineage BUNDLE`: a derived bundle's chain, oldest first, from the bundle alone; with a
real MLflow tracking server, the run that logged each link and the registered versions that hold
it; a server that is gone is a warning and the local chain still prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import modelmill
from modelmill.bundle import derive, read_bundle
from modelmill.tracking import tags
from modelmill.tracking.lineage import bundle_tags, chain, describe, mlflow_links
from tests.commands import run_main
from tests.conftest import base_config, make_frame
from tests.mlflow_server import MlflowServer

KEY = "ab" * 32


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained bundle (its data read from a CSV file), an encrypted copy, and a float16
    compression of it made by the real command."""
    folder = tmp_path_factory.mktemp("lineage")
    data = folder / "data.csv"
    make_frame(300).to_csv(data, index=False)
    pipeline = modelmill.Pipeline(base_config(data={"source": str(data), "split": {"method": "stratified",
                                                                                  "test": 0.25, "seed": 0}},
                                              evaluation={"plots": False, "report": False, "explain": 0}))
    pipeline.fit()
    parent = pipeline.save(folder / "parent")
    (folder / "key.hex").write_text(KEY)
    sealed = pipeline.save(folder / "sealed", key=KEY)
    code = run_main(["compress", str(parent), "-o", str(folder / "child"), "--method", "float16", "--data", str(data),
                     "--max-drop", "1"])
    assert code == 0
    return {"parent": parent, "child": folder / "child", "sealed": sealed, "key": folder / "key.hex", "data": data}


def lineage(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_main(["lineage", *args])
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def test_a_compressed_bundle_lists_trained_then_compressed_with_their_hashes(
        bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    parent, child = read_bundle(bundles["parent"]), read_bundle(bundles["child"])
    code, out, err = lineage(capsys, str(bundles["child"]), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["mlflow"] is False and document["tracking_uri"] is None and document["warnings"] == []
    first, last = document["chain"]
    assert (first["action"], first["name"], first["sha256"], first["current"]) == ("trained", "tiny", parent.digest,
                                                                                   False)
    assert first["created_at"] == parent.manifest["created_at"]
    assert (last["action"], last["sha256"], last["parent"], last["current"]) == ("compressed", child.digest,
                                                                                 parent.digest, True)
    assert last["data_source"] == str(bundles["data"])
    assert last["data_sha256"] == parent.manifest["data_sha256"] == child.manifest["data_sha256"]
    assert last["config_sha256"] == child.manifest["config_sha256"]
    assert last["modelmill_version"] == modelmill.__version__ and last["task"] == "predict"
    assert last["details"]["method"] == "float16" and last["summary"][0] == "method float16"
    assert "mlflow" not in last  # no tracking URI anywhere: no MLflow column
    # the table: both links, short hashes, the bundle's own record
    code, out, err = lineage(capsys, str(bundles["child"]))
    assert code == 0, err
    assert "trained" in out and "compressed" in out and "MLflow run" not in out
    assert parent.digest[:12] in out and child.digest in out and str(bundles["data"]) in out
    assert "method float16" in out and parent.manifest["data_sha256"] in out
    # a run directory holding the bundle in bundle/ reads the same
    run_dir = bundles["child"].parent / "run"
    run_dir.mkdir(exist_ok=True)
    if not (run_dir / "bundle").exists():
        (run_dir / "bundle").symlink_to(bundles["child"], target_is_directory=True)
    assert json.loads(lineage(capsys, str(run_dir), "--json")[1])["chain"][-1]["sha256"] == child.digest


def test_a_longer_chain_is_oldest_first_and_each_step_says_what_it_did(bundles: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    child = read_bundle(bundles["child"])
    grandchild = read_bundle(derive(child, tmp_path / "grandchild", action="exported", add={"model.onnx": b"graph"},
                                    details={"format": "onnx", "opset": 17,
                                             "check": {"rows": 64, "max_abs_diff": 1e-6, "passed": True}}))
    entries = chain(grandchild)
    assert [e["action"] for e in entries] == ["trained", "compressed", "exported"]
    assert [e["sha256"] for e in entries] == [read_bundle(bundles["parent"]).digest, child.digest, grandchild.digest]
    assert entries[-1]["summary"][0] == "onnx graph, opset 17"


def test_the_details_of_each_action_read_as_short_lines() -> None:
    retrained = describe("retrained", {"trigger": "drift", "champion_version": "3", "log": "sqlite:///x.db",
                                       "rows": {"logged_learned": 120, "held_back": 40},
                                       "recent": {"metric": "roc_auc", "rows": 40, "champion": 0.71,
                                                  "challenger": 0.78, "gain": 0.07}})
    assert retrained[0] == "trigger drift, from champion version 3"
    assert "120 logged rows learned, 40 held back" in retrained
    assert "recent roc_auc: champion 0.71, challenger 0.78 on 40 rows" in retrained
    refreshed = describe("refreshed", {"interactions_added": 7, "known_already": 2, "users_added": 1,
                                       "data_sha256": "f" * 64})
    assert refreshed[0] == "7 interactions added (2 known already), 1 new users"
    assert describe("grafted", {"added": ["extra.json"], "replaced": []}) == ["added: extra.json"]
    assert describe("trained", {}) == []


def test_mlflow_shows_the_run_that_logged_each_link_and_the_versions_holding_it(
        bundles: dict[str, Path], tracking_server: MlflowServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill.tracking.client import mlflow_client

    parent, child = read_bundle(bundles["parent"]), read_bundle(bundles["child"])
    client = mlflow_client(tracking_server.uri)
    experiment = client.create_experiment("lineage-links")
    # as the train integration logs a bundle: its tags, its files under bundle/
    parent_run = client.create_run(experiment, run_name="train-tiny", tags=bundle_tags(parent))
    client.log_artifacts(parent_run.info.run_id, str(bundles["parent"]), tags.BUNDLE_ARTIFACTS)
    client.set_terminated(parent_run.info.run_id)
    child_run = client.create_run(experiment, run_name="compress-tiny",
                                  tags={**bundle_tags(child), tags.PARENT_RUN_ID: parent_run.info.run_id})
    assert bundle_tags(child)[tags.PARENT_SHA256] == parent.digest
    assert bundle_tags(parent)[tags.MODEL_TYPE] == parent.models["model"].type == "mlp"  # auto's pick, where it picks
    client.create_registered_model("lineage-tiny")
    version = client.create_model_version("lineage-tiny", source=f"{child_run.info.artifact_uri}/bundle",
                                          run_id=child_run.info.run_id, tags=bundle_tags(child))
    client.set_registered_model_alias("lineage-tiny", "champion", version.version)

    code, out, err = lineage(capsys, str(bundles["child"]), "--json", "--tracking-uri", tracking_server.uri)
    assert code == 0, err
    document = json.loads(out)
    assert document["mlflow"] is True and document["tracking_uri"] == tracking_server.uri
    first, last = (entry["mlflow"] for entry in document["chain"])
    assert first["run"] == {"run_id": parent_run.info.run_id, "experiment_id": experiment,
                            "experiment": "lineage-links", "run_name": "train-tiny", "parent_run_id": None}
    assert first["versions"] == []
    assert last["run"]["run_id"] == child_run.info.run_id
    assert last["run"]["parent_run_id"] == parent_run.info.run_id  # MLflow shows the same link
    assert last["versions"] == [{"name": "lineage-tiny", "version": version.version,
                                 "run_id": child_run.info.run_id, "aliases": ["champion"]}]
    # the function others reuse: a text that is not a sha256 never reaches a filter string
    links = mlflow_links(client, [parent.digest, "x' OR '1'='1"])
    assert links[parent.digest]["run"]["run_id"] == parent_run.info.run_id
    assert links["x' OR '1'='1"] == {"run": None, "versions": []}
    # the table, the server found through MLFLOW_TRACKING_URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    code, out, err = lineage(capsys, str(bundles["child"]))
    assert code == 0, err
    assert parent_run.info.run_id in out and "lineage-links/train-tiny" in out
    assert f"lineage-tiny v{version.version} @champion" in out


def test_a_stopped_server_is_a_warning_and_the_local_chain_still_prints(
        bundles: dict[str, Path], own_tracking_server: MlflowServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    own_tracking_server.stop()
    # the credentials in the URI itself (nothing in the environment for redact to find by value):
    # only the URI's own redaction keeps them out of the output
    uri = own_tracking_server.uri.replace("http://", "http://someone:s3cret-pass@")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code, out, err = lineage(capsys, str(bundles["child"]), "--tracking-uri", uri)
    assert code == 0, err
    assert "warning:" in err and "local chain follows" in err and "s3cret-pass" not in err + out
    assert "http://***@127.0.0.1" in err, err  # the server named, without its credentials
    assert "trained" in out and "compressed" in out and read_bundle(bundles["child"]).digest in out
    code, out, err = lineage(capsys, str(bundles["child"]), "--json", "--tracking-uri", uri)
    document: dict[str, Any] = json.loads(out)
    assert code == 0 and document["mlflow"] is False and "s3cret-pass" not in out + err
    assert document["tracking_uri"] == own_tracking_server.uri.replace("http://", "http://***@")
    assert [e["action"] for e in document["chain"]] == ["trained", "compressed"] and document["warnings"]


def test_an_encrypted_bundle_needs_its_key(bundles: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELMILL_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("MODELMILL_ENCRYPTION_KEY_FILE", raising=False)
    code, out, err = lineage(capsys, str(bundles["sealed"]), "--json")
    assert code == 2 and "encrypted" in err and "Traceback" not in err
    code, out, err = lineage(capsys, str(bundles["sealed"]), "--json", "--key-file", str(bundles["key"]))
    assert code == 0, err
    assert json.loads(out)["chain"][-1]["sha256"] == read_bundle(bundles["sealed"], bytes.fromhex(KEY)).digest


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere"], "does not exist"),
    (["."], "is not a modelmill bundle"),
])
def test_a_wrong_path_is_exit_2_with_a_message(args: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = lineage(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_a_tracking_uri_of_the_wrong_scheme_is_exit_2(bundles: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = lineage(capsys, str(bundles["child"]), "--tracking-uri", "ftp://user:pw@host/x")
    assert code == 2 and "--tracking-uri" in err and "pw@" not in err, err


def test_without_a_tracking_uri_mlflow_is_never_imported(bundles: dict[str, Path]) -> None:
    script = ("import sys\nfrom modelmill.cli import main\nsys.argv = ['modelmill', 'lineage', sys.argv[1]]\n"
              "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
              "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", script, str(bundles["child"])], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "compressed" in done.stdout


def test_the_bundles_own_tracking_uri_is_never_contacted(bundles: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A bundle whose config names a tracking server (chosen by whoever made it): neither
    `lineage` nor `evaluate` connects there (it would carry the user's MLflow credentials); only
    --tracking-uri or MLFLOW_TRACKING_URI are asked."""
    import socket

    import yaml

    child = read_bundle(bundles["child"])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        config = yaml.safe_load(child.files["config.yaml"])
        config["tracking"] = {"uri": f"http://127.0.0.1:{port}"}
        planted = derive(child, tmp_path / "planted", action="retagged",
                         replace={"config.yaml": yaml.safe_dump(config).encode()})
        code, out, err = lineage(capsys, str(planted), "--json")
        assert code == 0, err
        document = json.loads(out)
        assert document["mlflow"] is False and document["tracking_uri"] is None
        capsys.readouterr()
        code = run_main(["evaluate", str(planted), str(bundles["data"]), "-o", str(tmp_path / "evaluation")])
        assert code == 0, capsys.readouterr().err
        assert "mlflow run:" not in capsys.readouterr().out
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
