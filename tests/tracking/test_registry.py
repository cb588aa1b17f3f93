"""The model registry against a real MLflow server: register → promote → `modelmill serve
models:/NAME@champion` (a real server process on loopback) answering exactly as the local
bundle does; the alias moved and an admin reload under load with no failed request; rollback;
a tampered artefact in the MLflow store refused on fetch; and the user's mistakes (an unknown
model or alias, a wrong URI) ending in one clear message and exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import modelmill
from modelmill.api import Pipeline
from modelmill.errors import BundleError, TrackingError
from modelmill.tracking import tags
from modelmill.tracking.client import mlflow_client
from modelmill.tracking.fetch import cache_folder, fetch
from modelmill.tracking.registry import ModelRef, register
from tests.conftest import base_config, make_frame
from tests.damage import flip_one_byte
from tests.mlflow_server import MlflowServer
from tests.serving.conftest import TOKEN, free_port, record

AUTH = {"Authorization": f"Bearer {TOKEN}"}
RECORDS = [record(x=x) for x in (-1.5, -0.2, 0.4, 1.7)]


KEY = bytes(range(32))


def _train(seed: int) -> Pipeline:
    config = base_config(model={"type": "mlp", "hidden": [8]},
                         training={"epochs": 2, "batch_size": 64, "progress": False, "seed": seed})
    return Pipeline(config).fit(make_frame(rows=240, seed=seed))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three trainings of the tiny pipeline (different seeds, so different answers), and the
    first one again, encrypted with KEY."""
    root = tmp_path_factory.mktemp("bundles")
    pipelines = [_train(seed) for seed in (1, 2, 3)]
    return [*(p.save(root / str(i)) for i, p in enumerate(pipelines, 1)), pipelines[0].save(root / "sealed", key=KEY)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("cache")
    before = os.environ.get("MODELMILL_CACHE")
    os.environ["MODELMILL_CACHE"] = str(folder)  # the fetched versions of this module, nowhere else
    yield folder
    if before is None:
        os.environ.pop("MODELMILL_CACHE", None)
    else:
        os.environ["MODELMILL_CACHE"] = before


def _expected(bundle: Path) -> list[float]:
    predicted = modelmill.load(bundle).predict(pd.DataFrame(RECORDS))
    return [float(p) for p in predicted["label_probability_good"].round(6)]


def _cli(*args: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``modelmill ARGS`` through the CLI's own entry point (exit code and its output)."""
    from modelmill.cli import main

    monkeypatch.setattr(sys, "argv", ["modelmill", *args])
    with pytest.raises(SystemExit) as exited:
        main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), " ".join((captured.err + captured.out).split())


def _serve(uri: str, port: int, *extra: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MODELMILL_ADMIN_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "modelmill.cli", "serve", *extra, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)


def _wait_ready(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become ready")


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
    return process.stdout.read() if process.stdout else ""


def _predict(http: httpx.Client) -> tuple[str, list[float]]:
    answer = http.post("/v1/predict", json={"instances": RECORDS})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["version"], [round(p["label_probability_good"], 6) for p in body["predictions"]]


def test_register_promote_serve_reload_under_load_and_roll_back(
        tracking_server: MlflowServer, bundles: list[Path], cache: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    uri = tracking_server.uri
    code, said = _cli("register", str(bundles[0]), "--name", "credit", "--tracking-uri", uri,
                      monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and said.endswith(" 1"), said
    code, said = _cli("promote", "credit", "1", "--alias", "champion", "--tracking-uri", uri,
                      monkeypatch=monkeypatch, capsys=capsys)
    assert (code, said) == (0, "credit@champion → version 1")
    expected = {"1": _expected(bundles[0]), "2": _expected(bundles[1])}
    assert expected["1"] != expected["2"]  # so the answers tell the versions apart

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(uri, port, "models:/credit@champion")
    try:
        _wait_ready(process, url)
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
            assert _predict(http) == ("1", pytest.approx(expected["1"], abs=1e-6))
            described = http.get("/v1/model").json()
            assert described["registry"] == {"model": "credit", "version": "1", "alias": "champion",
                                             "tracking_uri": uri}
            assert described["version_folder"] is False

            register(uri, bundles[1], "credit")  # version 2; the alias moves to it
            code, said = _cli("promote", "credit", "2", "--alias", "champion", "--tracking-uri", uri,
                              monkeypatch=monkeypatch, capsys=capsys)
            assert (code, said) == (0, "credit@champion → version 2 (was version 1)")
            results = _reload_under_load(url, http)
            assert [r for r in results if r[0] != 200] == []
            for _, version, probabilities in results:
                assert probabilities == pytest.approx(expected[version], abs=1e-5)  # the named version answered
            assert {version for _, version, _ in results} == {"1", "2"}
            assert http.get("/v1/model").json()["registry"]["version"] == "2"

            back = http.post("/v1/admin/rollback")
            assert back.status_code == 200, back.text
            assert back.json()["version"] == "1"
            assert _predict(http) == ("1", pytest.approx(expected["1"], abs=1e-6))
            again = http.post("/v1/admin/rollback")  # nothing served before version 1
            assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_roll_back"
            assert "modelmill promote credit VERSION --alias champion" in again.json()["error"]["message"]

            unknown = http.post("/v1/admin/reload", json={"version": "99"})
            assert unknown.status_code == 404, unknown.text
            assert "its versions: 1, 2" in unknown.json()["error"]["message"]
            pinned = http.post("/v1/admin/reload", json={"version": "2"})
            assert pinned.status_code == 200 and pinned.json()["version"] == "2"
    finally:
        log = _stop(process)
    assert "Traceback" not in log, log
    folder = cache_folder(uri, "credit")
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2"]  # nothing half-written beside them


def _reload_under_load(url: str, admin: httpx.Client) -> list[tuple[int, str, list[float]]]:
    """Four clients predicting while an admin reload re-resolves the alias. A request that
    fails with an exception (a refused or dropped connection) counts as a failure (status 0)."""
    results: list[tuple[int, str, list[float]]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                try:
                    answer = client.post("/v1/predict", json={"instances": RECORDS})
                    body = answer.json()
                except Exception:  # noqa: BLE001 - a failed request, counted as such
                    results.append((0, "", []))
                    continue
                results.append((answer.status_code, body.get("version", ""),
                                [round(p["label_probability_good"], 6) for p in body.get("predictions", [])]))

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(results) < count:
            assert time.monotonic() < deadline, f"only {len(results)} answers in 60 s"
            time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(20)
        # the reload's time is no bar here (the bar: no request fails during it); two busy cores
        # running other suites' servers beside this one took it past a minute once
        reloaded = admin.post("/v1/admin/reload", timeout=240)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["version"] == "2"
        wait_for(len(results) + 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return results


def _predict_anew(url: str) -> tuple[str, list[float]]:
    with httpx.Client(base_url=url, timeout=60) as http:
        return _predict(http)


def _model_info(url: str) -> dict[str, float]:
    """``modelmill_model_info`` from /metrics: version → value. Across workers it is the largest
    value of the live ones: a version is 1 while any worker serves it, 0 once none does."""
    found: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("modelmill_model_info{"):
            version = line.split('version="', 1)[1].split('"', 1)[0]
            found[version] = float(line.rsplit(" ", 1)[1])
    return found


def _until(check: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.2)


class _Watched:
    """``modelmill serve`` in a process whose output is read as it comes (uvicorn's lines tell
    when a worker has started), for the tests of several workers."""

    def __init__(self, uri: str, port: int, *extra: str) -> None:
        self.process = _serve(uri, port, *extra)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def started(self) -> int:
        return sum("Application startup complete" in line for line in self.lines)

    def workers(self) -> list[int]:
        """The worker processes (uvicorn's spawned children; not multiprocessing's resource tracker)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        found = []
        for pid in map(int, children):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in command and b"resource_tracker" not in command:
                found.append(pid)
        return found

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.reader.join(10)
        return "".join(self.lines)


def test_two_workers_serve_the_alias_and_both_follow_a_reload(
        tracking_server: MlflowServer, bundles: list[Path], cache: Path) -> None:
    uri = tracking_server.uri
    version = register(uri, bundles[1], "workers")
    mlflow_client(uri).set_registered_model_alias("workers", "challenger", version.version)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    served = _Watched(uri, port, "models:/workers@challenger", "--workers", "2", "--max-wait-ms", "1")
    try:
        _wait_ready(served.process, url)
        _until(lambda: served.started() >= 2, "both workers started")
        assert _model_info(url) == {"1": 1.0}
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
            assert {_predict_anew(url)[0] for _ in range(6)} == {"1"}  # new connections: either worker answers
            assert http.get("/v1/model").json()["registry"]["alias"] == "challenger"
            moved = register(uri, bundles[0], "workers")
            mlflow_client(uri).set_registered_model_alias("workers", "challenger", moved.version)
            reloaded = http.post("/v1/admin/reload")
            assert reloaded.status_code == 200 and reloaded.json()["version"] == "2", reloaded.text
            # both workers served version 1; its gauge is 0 only once no live worker serves it any more
            _until(lambda: _model_info(url) == {"1": 0.0, "2": 1.0}, "the other worker following the reload", 30)
            assert len(served.workers()) == 2
            assert {_predict_anew(url)[0] for _ in range(10)} == {"2"}
    finally:
        log = served.stop()
    assert "Traceback" not in log, log


def test_workers_serve_the_version_their_parent_resolved_even_after_the_alias_moved(
        tracking_server: MlflowServer, bundles: list[Path], cache: Path) -> None:
    """The alias moves without an admin reload, then a worker dies and is restarted: it serves
    the version the parent resolved (the workers' selection), not what the alias names now."""
    uri = tracking_server.uri
    first = register(uri, bundles[0], "steady")
    second = register(uri, bundles[1], "steady")
    client = mlflow_client(uri)
    client.set_registered_model_alias("steady", "champion", first.version)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    served = _Watched(uri, port, "models:/steady@champion", "--workers", "2", "--max-wait-ms", "1")
    try:
        _wait_ready(served.process, url)
        _until(lambda: served.started() >= 2, "both workers started")
        _until(lambda: len(served.workers()) == 2, "two worker processes")
        client.set_registered_model_alias("steady", "champion", second.version)  # moved; nobody reloads
        os.kill(served.workers()[0], signal.SIGKILL)
        _until(lambda: served.started() >= 3, "the killed worker restarted", 120)
        assert _model_info(url) == {"1": 1.0}  # no live worker serves version 2
        assert {_predict_anew(url)[0] for _ in range(10)} == {"1"}
    finally:
        log = served.stop()
    assert "version 2" not in log, log


def test_registering_a_logged_bundle_again_reuses_its_run(tracking_server: MlflowServer, bundles: list[Path]) -> None:
    first = register(tracking_server.uri, bundles[0], "again")
    second = register(tracking_server.uri, bundles[0], "again", description="the same bundle")
    assert (first.version, second.version) == ("1", "2")
    assert first.run_id == second.run_id and first.source == second.source
    assert second.tags[tags.BUNDLE_SHA256] == modelmill.bundle.read_bundle(bundles[0]).digest
    run = mlflow_client(tracking_server.uri).get_run(first.run_id)
    assert run.data.tags[tags.ACTION] == "register"


def test_a_tampered_artefact_is_refused_on_fetch(tracking_server: MlflowServer, bundles: list[Path],
                                                 cache: Path) -> None:
    uri = tracking_server.uri
    version = register(uri, bundles[2], "tampered")
    experiment = mlflow_client(uri).get_run(version.run_id).info.experiment_id
    stored = tracking_server.artifacts / experiment / version.run_id / "artifacts" / "bundle" / "features.json"
    assert stored.is_file(), sorted(stored.parent.parent.rglob("*"))
    flip_one_byte(stored)
    with pytest.raises(TrackingError) as refused:
        fetch(uri, ModelRef("tampered", version="1"))
    message = str(refused.value)
    assert message.startswith("integrity check failed for features.json"), message
    assert "registered model 'tampered' version 1" in message
    folder = cache_folder(uri, "tampered")
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing half-written left


def test_a_version_that_fails_its_checks_on_reload_is_409_and_the_old_one_keeps_serving(
        tracking_server: MlflowServer, bundles: list[Path], cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.serving.conftest import live_server

    uri = tracking_server.uri
    client = mlflow_client(uri)
    good = register(uri, bundles[0], "guarded")
    bad = register(uri, bundles[2], "guarded")  # the run the tampered test damaged, or damaged here
    experiment = client.get_run(bad.run_id).info.experiment_id
    stored = tracking_server.artifacts / experiment / bad.run_id / "artifacts" / "bundle" / "features.json"
    if read_bundle_ok(stored.parent):
        flip_one_byte(stored)
    client.set_registered_model_alias("guarded", "champion", good.version)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", TOKEN)
    with live_server("models:/guarded@champion") as live, httpx.Client(base_url=live.url, headers=AUTH) as http:  # type: ignore[arg-type]
        client.set_registered_model_alias("guarded", "champion", bad.version)
        refused = http.post("/v1/admin/reload")
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "fetch_failed"
        assert "integrity check failed for features.json of registered model 'guarded' version 2" in error["message"]
        assert _predict(http) == ("1", pytest.approx(_expected(bundles[0]), abs=1e-6))
        assert http.get("/v1/model").json()["registry"]["version"] == "1"
    assert sorted(p.name for p in cache_folder(uri, "guarded").iterdir()) == ["1"]


def read_bundle_ok(folder: Path) -> bool:
    try:
        modelmill.bundle.read_bundle(folder)
    except BundleError:
        return False
    return True


def test_fetches_of_one_version_at_once_keep_one_verified_copy(
        tracking_server: MlflowServer, bundles: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each fetch downloads into a staging folder of its own and renames it into place: the
    first to land wins, the others find its copy (threads here; processes race the same way)."""
    uri = tracking_server.uri
    register(uri, bundles[1], "racing")
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path))
    answers: list[Path | BaseException] = []

    def racer() -> None:
        try:
            answers.append(fetch(uri, ModelRef("racing", version="1")))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            answers.append(exc)

    racers = [threading.Thread(target=racer) for _ in range(4)]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join(60)
    folder = cache_folder(uri, "racing") / "1"
    assert answers == [folder] * 4
    assert modelmill.bundle.read_bundle(folder).digest == modelmill.bundle.read_bundle(bundles[1]).digest
    assert sorted(p.name for p in folder.parent.iterdir()) == ["1"]  # no partial copy left beside it


def test_an_encrypted_bundle_is_registered_sealed_and_fetched_with_its_key(
        tracking_server: MlflowServer, bundles: list[Path], cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill.encryption import KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT, MAGIC
    from modelmill.errors import EncryptionKeyError

    monkeypatch.delenv(KEY_ENVIRONMENT, raising=False)
    monkeypatch.delenv(KEY_FILE_ENVIRONMENT, raising=False)
    uri = tracking_server.uri
    version = register(uri, bundles[3], "sealed", key=KEY)
    experiment = mlflow_client(uri).get_run(version.run_id).info.experiment_id
    stored = tracking_server.artifacts / experiment / version.run_id / "artifacts" / "bundle"
    files = [f for f in stored.rglob("*") if f.is_file()]
    assert files and all(f.read_bytes().startswith(MAGIC) for f in files)  # no plaintext in the MLflow store
    with pytest.raises(EncryptionKeyError):
        fetch(uri, ModelRef("sealed"))
    assert list(cache_folder(uri, "sealed").iterdir()) == []
    folder = fetch(uri, ModelRef("sealed"), key=KEY)
    assert modelmill.bundle.read_bundle(folder, key=KEY).digest == version.tags[tags.BUNDLE_SHA256]


def test_unknown_names_and_wrong_uris_are_exit_2_with_a_clear_message(
        tracking_server: MlflowServer, bundles: list[Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    uri = tracking_server.uri
    register(uri, bundles[0], "scoring")

    def cli(*args: str) -> tuple[int, str]:
        return _cli(*args, monkeypatch=monkeypatch, capsys=capsys)

    code, said = cli("promote", "scorng", "1", "--alias", "champion", "--tracking-uri", uri)
    assert code == 2 and "no registered model 'scorng'" in said and "did you mean 'scoring'" in said, said
    code, said = cli("promote", "scoring", "7", "--alias", "champion", "--tracking-uri", uri)
    assert code == 2 and "has no version 7; its versions: 1" in said, said
    code, said = cli("promote", "scoring", "1", "--alias", "latest", "--tracking-uri", uri)
    assert code == 2 and "reserved" in said, said
    code, said = cli("register", str(bundles[0]), "--name", "scoring", "--tracking-uri", "ftp://x")
    assert code == 2 and "--tracking-uri" in said and "ftp" in said, said
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, said = cli("serve", "models:/scoring@champion")
    assert code == 2 and "has no alias 'champion'" in said and "its aliases: none" in said, said
    code, said = cli("serve", "models:/nothing")
    assert code == 2 and "no registered model 'nothing'" in said, said
    dead = f"http://127.0.0.1:{free_port()}"
    code, said = cli("promote", "scoring", "1", "--alias", "champion", "--tracking-uri", dead)
    assert code == 2 and f"the MLflow server at {dead}" in said, said


def test_a_malformed_model_uri_is_exit_2_from_the_real_command(tracking_server: MlflowServer) -> None:
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "serve", "models:credit"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MLFLOW_TRACKING_URI": tracking_server.uri})
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stderr
    assert "'models:credit' is not a registered model URI" in said and "models:/NAME@ALIAS" in said, said
    assert "Traceback" not in done.stderr


def test_a_recreated_model_with_the_same_version_number_is_fetched_anew_not_served_stale(
        tracking_server: MlflowServer, bundles: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 1 of a registered model deleted and made again holds another bundle: the cached
    copy of the old one is checked against the new version's tag, found stale and replaced.
    A cached copy damaged on disk is replaced the same way; a staging folder left by a fetch
    that died over an hour ago is cleared."""
    uri = tracking_server.uri
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path))
    client = mlflow_client(uri)
    register(uri, bundles[0], "recreated")
    folder = fetch(uri, ModelRef("recreated", version="1"))
    assert modelmill.bundle.read_bundle(folder).digest == modelmill.bundle.read_bundle(bundles[0]).digest
    client.delete_registered_model("recreated")
    assert register(uri, bundles[1], "recreated").version == "1"
    again = fetch(uri, ModelRef("recreated", version="1"))
    assert again == folder
    assert modelmill.bundle.read_bundle(again).digest == modelmill.bundle.read_bundle(bundles[1]).digest
    # damaged in the cache: moved aside and fetched again
    flip_one_byte(folder / "features.json")
    left = folder.parent / ".1.deadbeef0000.partial"
    left.mkdir()
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    repaired = fetch(uri, ModelRef("recreated", version="1"))
    assert modelmill.bundle.read_bundle(repaired).digest == modelmill.bundle.read_bundle(bundles[1]).digest
    assert sorted(p.name for p in folder.parent.iterdir()) == ["1"]


def test_a_served_recreated_version_is_the_new_bundle(
        tracking_server: MlflowServer, bundles: list[Path], cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server side of the test above: a server started on models:/NAME/1 after the model was
    made again serves the new version 1, not what the cache held from before."""
    from tests.serving.conftest import live_server

    uri = tracking_server.uri
    register(uri, bundles[0], "remade")
    fetch(uri, ModelRef("remade", version="1"))
    mlflow_client(uri).delete_registered_model("remade")
    register(uri, bundles[1], "remade")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with live_server("models:/remade/1") as live, httpx.Client(base_url=live.url) as http:  # type: ignore[arg-type]
        assert _predict(http) == ("1", pytest.approx(_expected(bundles[1]), abs=1e-6))


def test_a_model_name_with_a_quote_works_or_is_exit_2(
        tracking_server: MlflowServer, bundles: list[Path], cache: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    uri = tracking_server.uri

    def cli(*args: str) -> tuple[int, str]:
        return _cli(*args, monkeypatch=monkeypatch, capsys=capsys)

    code, said = cli("register", str(bundles[0]), "--name", "o'brien", "--tracking-uri", uri)
    assert code == 0, said
    code, said = cli("register", str(bundles[1]), "--name", "o'brien", "--tracking-uri", uri)
    assert code == 0 and said.endswith(" 2"), said
    newest = fetch(uri, ModelRef("o'brien"))  # the newest: found by a search whose filter quotes the name
    assert newest.name == "2"
    code, said = cli("register", str(bundles[0]), "--name", "it's \"x\"", "--tracking-uri", uri)
    assert code == 2 and "both" in said, said
    code, said = cli("register", str(bundles[0]), "--name", "a:b", "--tracking-uri", uri)
    assert code == 2 and "Traceback" not in said, said
    code, said = cli("promote", "o'brien' OR name = 'x", "1", "--alias", "champion", "--tracking-uri", uri)
    assert code == 2, said
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, said = cli("serve", "models:/o'brien/01")
    assert code == 2 and "not a version number" in said, said


def test_a_tampered_sealed_artefact_is_an_integrity_error_naming_the_file(
        tracking_server: MlflowServer, bundles: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = tracking_server.uri
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path))
    version = register(uri, bundles[3], "sealed-tampered", key=KEY)
    experiment = mlflow_client(uri).get_run(version.run_id).info.experiment_id
    stored = tracking_server.artifacts / experiment / version.run_id / "artifacts" / "bundle" / "features.json"
    flip_one_byte(stored)
    with pytest.raises(TrackingError) as refused:
        fetch(uri, ModelRef("sealed-tampered", version=version.version), key=KEY)
    message = str(refused.value)
    assert message.startswith("integrity check failed for features.json"), message
    assert f"registered model 'sealed-tampered' version {version.version}" in message


def test_serving_a_registered_model_with_shadow_is_refused(
        tracking_server: MlflowServer, bundles: list[Path], cache: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    register(tracking_server.uri, bundles[0], "shadowless")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    code, said = _cli("serve", "models:/shadowless/1", "--shadow", "next", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "no .shadow/ folder" in said, said


def test_a_deleted_experiment_named_like_the_bundle_does_not_stop_register(
        tracking_server: MlflowServer, bundles: list[Path], tmp_path: Path) -> None:
    """Last in the module: it deletes the experiment the bundles' register runs went to."""
    uri = tracking_server.uri
    client = mlflow_client(uri)
    name = modelmill.bundle.read_bundle(bundles[2]).name
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = client.create_experiment(name)
    else:
        experiment_id = experiment.experiment_id
    client.delete_experiment(experiment_id)
    fresh = _train(7).save(tmp_path / "fresh")
    version = register(uri, fresh, "after-delete")
    run = client.get_run(version.run_id)
    assert client.get_experiment(run.info.experiment_id).name == f"{name} (registered)"
