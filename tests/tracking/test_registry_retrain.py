"""The closed loop promoting through the MLflow model registry (``monitoring.retrain.registry``)
against a real MLflow server and a real ``modelmill serve models:/NAME@champion`` process that
logs to SQLite: shifted traffic and late labels, then ``modelmill retrain`` registers the
challenger as a new version, moves the alias to it, and the service, reloaded with no version,
serves it; the audit names the registry versions. A challenger the service cannot load (its
stored files damaged) takes the alias back to the champion, and the decision is ``failed``.
Giving both ways (--versions and the registry), or neither, or --shadow-first with the
registry, or no tracking server, is one clear error (exit 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelmill.bundle import read_bundle
from modelmill.monitoring.export import open_log
from modelmill.retraining import retrain
from modelmill.retraining.watch import Watcher
from modelmill.tracking import registry, tags
from modelmill.tracking.client import mlflow_client
from modelmill.tracking.fetch import cache_folder
from modelmill.tracking.registry import promote, register
from tests.commands import exit_and_said
from tests.damage import flip_one_byte
from tests.mlflow_server import MlflowServer
from tests.monitoring.service import start_server, stop_server
from tests.retraining.conftest import Loop, adult_loop  # noqa: F401  (the fixture, shared with the closed loop)
from tests.retraining.traffic import ENV, cli, records, send_with_late_labels, wait_for_labels

NAME = "adult-closed-loop"


def _damaging(register: Callable[..., Any], server: MlflowServer) -> Callable[..., Any]:
    """``register``, then one byte of the registered files flipped in the MLflow store."""
    def damaged(*args: Any, **kwargs: Any) -> Any:
        version = register(*args, **kwargs)
        experiment = mlflow_client(server.uri).get_run(version.run_id).info.experiment_id
        flip_one_byte(server.artifacts / experiment / version.run_id / "artifacts" / "bundle" / "features.json")
        return version
    return damaged


def _registry_config(loop: Loop, uri: str | None, registry: str = f"models:/{NAME}@champion") -> Path:
    config = yaml.safe_load((loop.folder / "adult.yaml").read_text())
    config["monitoring"]["retrain"]["registry"] = registry
    if uri is not None:
        config["tracking"] = {"uri": uri}
    path = loop.folder / "registry.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_promoted_challenger_becomes_a_registry_version_the_alias_and_the_service_follow(
        tracking_server: MlflowServer, adult_loop: Loop, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    uri = tracking_server.uri
    loop = adult_loop.copy(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MODELMILL_CACHE", str(cache))  # this test's fetched versions, nowhere else
    env = {**ENV, "MODELMILL_CACHE": str(cache)}
    first = register(uri, loop.models / "1", NAME)
    assert str(first.version) == "1"
    assert promote(uri, NAME, "1", "champion") is None
    config = _registry_config(loop, uri)

    log_url = f"sqlite:///{loop.folder / 'monitor.db'}"
    server = start_server(Path(f"models:/{NAME}@champion"), "--log", log_url,
                          env={**env, "MLFLOW_TRACKING_URI": uri})
    try:
        described = httpx.get(f"{server.url}/v1/model").json()
        assert described["version"] == "1" and described["registry"]["alias"] == "champion"
        send_with_late_labels(server.url, loop.traffic.iloc[:1500])
        wait_for_labels(log_url, 1500)

        # A challenger the service cannot take (its stored copy damaged once registered): the
        # alias goes back to version 1, which the service still serves.
        with monkeypatch.context() as patched:
            patched.setattr(registry, "register", _damaging(registry.register, tracking_server))
            patched.setenv("MODELMILL_ADMIN_TOKEN", ENV["MODELMILL_ADMIN_TOKEN"])
            failed = retrain(config, log_url=log_url, serve=server.url, runs=loop.folder / "runs")
        assert (failed.outcome, failed.champion, failed.challenger) == ("failed", "1", "2"), failed.reason
        assert "but the service did not load it" in failed.reason and "integrity check failed" in failed.reason
        assert failed.reason.endswith(f"models:/{NAME}@champion names version 1 again (version 2 stays registered, "
                                      "without the alias)"), failed.reason
        assert dict(mlflow_client(uri).get_registered_model(NAME).aliases) == {"champion": "1"}
        assert httpx.get(f"{server.url}/v1/model").json()["version"] == "1"

        promoted = cli("retrain", str(config), "--log", log_url, "--serve", server.url, "--runs",
                       str(loop.folder / "runs"), cwd=tmp_path, env=env)
        assert promoted.returncode == 0, promoted.stderr
        said = " ".join(promoted.stderr.split())
        assert "promoted version 3" in said and f"registered the challenger as version 3 of '{NAME}'" in said, said
        assert f"models:/{NAME}@champion → version 3 (was version 1)" in said, said
        served = httpx.get(f"{server.url}/v1/model").json()
        assert served["version"] == "3" and served["registry"]["version"] == "3"
        answer = httpx.post(f"{server.url}/v1/predict", json={"instances": records(loop.traffic.iloc[:3])},
                            timeout=30)
        assert answer.status_code == 200 and answer.json()["version"] == "3", answer.text

        with monkeypatch.context() as patched:  # watch judges the log against the version the alias names
            patched.setenv("MODELMILL_ADMIN_TOKEN", ENV["MODELMILL_ADMIN_TOKEN"])
            reference = Watcher(config, log_url=log_url, serve=server.url, check_every="1s")._reference()
        assert reference.version == "3" and reference.path == cache_folder(uri, NAME).resolve()
    finally:
        assert stop_server(server) == 0
    assert "Traceback" not in server.text(), server.text()

    # The registry: version 3 holds the challenger, retrained from version 1, and the alias names it.
    client = mlflow_client(uri)
    assert dict(client.get_registered_model(NAME).aliases) == {"champion": "3"}
    second = client.get_model_version(NAME, "3")
    champion_bundle = read_bundle(loop.models / "1")
    assert second.tags[tags.LINEAGE_ACTION] == "retrained"
    assert second.tags[tags.PARENT_SHA256] == champion_bundle.digest
    assert sorted(p.name for p in cache_folder(uri, NAME).iterdir() if not p.name.startswith(".")) == ["1", "3"]
    fetched = read_bundle(cache_folder(uri, NAME) / "3")  # what the service fetched and serves
    assert fetched.digest == second.tags[tags.BUNDLE_SHA256]
    assert fetched.lineage.action == "retrained" and fetched.lineage.parent == champion_bundle.digest

    # The audit: the registry's version numbers, champion → challenger.
    store = open_log(log_url)
    try:
        first, decision = store.decisions()
    finally:
        store.close()
    assert (first["outcome"], first["champion"], first["challenger"]) == ("failed", "1", "2")
    assert (decision["outcome"], decision["champion"], decision["challenger"]) == ("promoted", "1", "3")
    assert decision["figures"]["registry"] == {"model": NAME, "alias": "champion", "tracking_uri": uri,
                                               "champion": "1", "challenger": "3"}
    assert decision["lineage"]["parent"] == champion_bundle.digest
    assert decision["figures"]["recent"]["low"] > 0


@pytest.mark.parametrize("case", ["both", "neither", "shadow first", "no server", "no alias"])
def test_where_the_champion_is_must_be_said_once(adult_loop: Loop, tmp_path: Path, case: str,  # noqa: F811
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    loop = adult_loop.copy(tmp_path)
    log_url = f"sqlite:///{loop.folder / 'monitor.db'}"
    config = _registry_config(loop, None if case == "no server" else "http://127.0.0.1:9",
                              f"models:/{NAME}/1" if case == "no alias" else f"models:/{NAME}@champion")
    extra: list[str] = []
    if case == "both":
        extra = ["--versions", str(loop.models)]
        expected = "both --versions"
    elif case == "neither":
        config = loop.folder / "adult.yaml"
        expected = "retraining needs to know where the champion is"
    elif case == "shadow first":
        extra = ["--shadow-first", "--serve", "http://127.0.0.1:9"]
        expected = "--shadow-first needs a folder of versions"
    elif case == "no alias":
        expected = f"'models:/{NAME}/1' is not a registered model's alias"
    else:
        expected = "needs the MLflow tracking server that holds the model registry"
    args = ["retrain", str(config), "--log", log_url, *extra, "--runs", str(tmp_path / "runs")]
    env = {**ENV, "MLFLOW_TRACKING_URI": ""}
    # the real command in its own process for one case; the other cases through its entry point here
    code, said = exit_and_said(*args, cwd=tmp_path, env=env, capsys=capsys, monkeypatch=monkeypatch,
                               own_process=case == "no server")
    assert code == 2, said
    assert expected in said and "Traceback" not in said, said
    if case in ("both", "neither"):  # the message names both ways
        assert "--versions FOLDER" in said and "monitoring.retrain.registry: models:/NAME@ALIAS" in said, said
    assert not (tmp_path / "runs").exists()  # nothing trained
