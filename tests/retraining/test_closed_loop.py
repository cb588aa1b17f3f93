"""The closed loop end to end against the real service (``modelmill serve`` in its own process,
logging to SQLite): shifted traffic, labels that arrive later through ``/v1/feedback``, then
``modelmill retrain`` under load: a challenger made from damaged data is refused (the
champion keeps serving), a challenger that learned the shift is promoted and reloaded with
no failed request; ``modelmill log decisions`` and the dashboard say why."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from modelmill.bundle import read_bundle
from modelmill.monitoring.dashboard import build_app
from modelmill.monitoring.export import open_log
from tests.commands import exit_and_said
from tests.monitoring.service import start_server, stop_server
from tests.retraining.conftest import Loop
from tests.retraining.traffic import ENV, Load, cli, send_with_late_labels, wait_for_labels


def test_a_shifted_stream_is_retrained_and_promoted_under_load_and_a_worse_challenger_refused(
        adult_loop: Loop, tmp_path: Path) -> None:
    loop = adult_loop.copy(tmp_path)
    log_url = f"sqlite:///{loop.folder / 'monitor.db'}"
    server = start_server(loop.models, "--log", log_url, env=ENV)
    try:
        send_with_late_labels(server.url, loop.traffic.iloc[:1500])
        wait_for_labels(log_url, 1500)
        common = ["--log", log_url, "--versions", str(loop.models), "--serve", server.url, "--runs",
                  str(loop.folder / "runs")]
        with Load(server.url, loop.traffic.iloc[1500:]) as load:
            refused = cli("retrain", str(loop.folder / "damaged.yaml"), *common, cwd=tmp_path, env=ENV)
            assert refused.returncode == 0, refused.stderr
            assert "refused" in refused.stderr and "worse on the original test split" in " ".join(refused.stderr.split())
            assert httpx.get(f"{server.url}/v1/model").json()["version"] == "1"
            assert not (loop.models / "2").exists()  # nothing promoted

            promoted = cli("retrain", str(loop.folder / "adult.yaml"), *common, cwd=tmp_path, env=ENV)
            assert promoted.returncode == 0, promoted.stderr
            assert "promoted version 2" in promoted.stderr, promoted.stderr
            served = httpx.get(f"{server.url}/v1/model").json()
            assert served["version"] == "2"
            time.sleep(0.5)  # a few answers from the new version
        assert load.errors == [] and set(load.statuses) == {200}, (load.errors, set(load.statuses))
        assert len(load.statuses) > 20 and {"1", "2"} <= set(load.versions)
    finally:
        assert stop_server(server) == 0

    # The audit: both decisions, why, their figures, the new bundle's lineage.
    store = open_log(log_url)
    try:
        first, second = store.decisions()
    finally:
        store.close()
    assert (first["outcome"], first["champion"], first["challenger"]) == ("refused", "1", None)
    test = first["figures"]["original_test"]
    assert test["challenger"] < test["champion"] - 0.01 and first["figures"]["recent"]["rows"] >= 100
    assert (second["outcome"], second["champion"], second["challenger"]) == ("promoted", "1", "2")
    recent = second["figures"]["recent"]
    assert recent["low"] > 0 and recent["challenger"] > recent["champion"]
    assert second["figures"]["rows"]["logged_learned"] + second["figures"]["rows"]["held_back"] == 1500
    bundle = read_bundle(loop.models / "2")
    assert bundle.lineage.action == "retrained" and bundle.lineage.parent == read_bundle(loop.models / "1").digest
    assert second["lineage"]["parent"] == bundle.lineage.parent
    split, original = bundle.split(), read_bundle(loop.models / "1").split()
    assert split is not None and original is not None
    assert split["test_rows"] == original["test_rows"]  # judged on the same original test rows
    cleaning = bundle.json("cleaning_report.json")  # it learned from the original rows but the test split, and the log's
    assert cleaning["rows_in"] == second["figures"]["rows"]["original_train"] + second["figures"]["rows"]["logged_learned"]
    assert cleaning["rows_out"] == split["rows"]["train"] + split["rows"]["valid"]
    assert second["figures"]["rows"]["original_train"] >= 6000 - 1200 - 5

    shown = cli("log", "decisions", "--log", log_url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert f"1 refused: {first['reason']}" in text and f"2 promoted: {second['reason']}" in text

    with TestClient(build_app(loop.models, log_url, window=200)) as client:
        decisions = client.get("/api/decisions").json()
    assert [d["outcome"] for d in decisions] == ["promoted", "refused"]  # newest first
    assert decisions[0]["reason"] == second["reason"]


@pytest.mark.parametrize("case", ["config", "no labels", "unreachable", "one bundle", "database"])
def test_bad_input_is_a_clear_error_and_nothing_is_promoted(adult_loop: Loop, tmp_path: Path, case: str,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.monitoring.filling import fill_log
    from tests.serving.conftest import free_port

    loop = adult_loop.copy(tmp_path)
    log_url = f"sqlite:///{loop.folder / 'monitor.db'}"
    fill_log(log_url, loop.models, loop.traffic.iloc[:400], labels=case != "no labels")
    config = loop.folder / "adult.yaml"
    versions = loop.models
    extra: list[str] = []
    if case == "config":
        changed = config.read_text().replace("name: education-num\n  type: number", "name: education-num\n  type: category")
        config = loop.folder / "changed.yaml"
        config.write_text(changed)
        expected = "the config no longer matches the champion (version 1): input 'education-num' is number"
    elif case == "no labels":
        expected = "holds no labelled records"
    elif case == "unreachable":
        extra = ["--serve", f"http://127.0.0.1:{free_port()}"]
        expected = "--serve: the service does not answer"
    elif case == "one bundle":
        versions = loop.models / "1"
        expected = "is one bundle, not a folder of versions"
    else:  # a table gone from under the store (a restore gone wrong, say): read errors are one message too
        import sqlite3

        with sqlite3.connect(loop.folder / "monitor.db") as connection:
            connection.execute("DROP TABLE modelmill_decisions")
        expected = "cannot be read: no such table: modelmill_decisions. Fix: check that the database runs"
    args = ["retrain", str(config), "--log", log_url, "--versions", str(versions), *extra, "--runs",
            str(tmp_path / "runs")]
    # the real command in its own process for one case; the other cases through its entry point here
    code, said = exit_and_said(*args, cwd=tmp_path, env=ENV, capsys=capsys, monkeypatch=monkeypatch,
                               own_process=case == "unreachable")
    assert code == 2, said
    assert expected in said, said
    assert "Traceback" not in said
    assert sorted(p.name for p in loop.models.iterdir() if not p.name.startswith(".")) == ["1"]
    if case != "database":
        store = open_log(log_url)
        try:
            assert store.decisions() == []
        finally:
            store.close()
