"""``modelmill watch``'s triggers on real data: a drift alarm fires once however many windows
it lasts, and again only after it cleared; new labels start a retraining; a trigger that
fires while a retraining runs (here: another process's, holding the folder's lock) waits
for it and is answered after it."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelmill.config.monitoring import TriggerConfig
from modelmill.monitoring.export import open_log
from modelmill.monitoring.watch import Reference
from modelmill.retraining.promote import VersionFolder
from modelmill.retraining.triggers import Triggers
from modelmill.retraining.watch import Watcher
from tests.monitoring.filling import fill_log
from tests.retraining.conftest import Loop


def test_a_drift_alarm_fires_once_not_once_per_window(adult_loop: Loop, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    young = pd.read_csv(adult_loop.folder / "young.csv")
    reference = Reference.load(adult_loop.models)
    triggers = Triggers(TriggerConfig(drift=True, decay=False, new_labels=None))
    fired: list[list[str]] = []
    windows = [young.iloc[:200], adult_loop.traffic.iloc[:200], adult_loop.traffic.iloc[200:400],
               adult_loop.traffic.iloc[400:600], young.iloc[200:400], adult_loop.traffic.iloc[600:800]]
    for n, window in enumerate(windows):  # windows of 200 rows (monitoring.window), one check after each
        fill_log(url, adult_loop.models, window, start=1_790_000_000.0 + n * 1000, prefix=f"w{n}-")
        store = open_log(url)  # opened afresh per check, as watch does
        try:
            fired.append([f.trigger for f in triggers.check(store, reference, last_decision=None)])
        finally:
            store.close()
    # young rows: quiet; older people: one firing for three windows of drift; young: cleared; older: again
    assert fired == [[], ["drift"], [], [], [], ["drift"]]


def test_labels_trigger_a_retraining_and_a_trigger_during_one_waits(adult_loop: Loop, tmp_path: Path) -> None:
    loop = adult_loop.copy(tmp_path)
    config = yaml.safe_load((loop.folder / "adult.yaml").read_text())
    config["monitoring"]["retrain"]["triggers"] = {"drift": False, "decay": False, "new_labels": 500}
    path = loop.folder / "watched.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"sqlite:///{loop.folder / 'monitor.db'}"
    fill_log(url, loop.models, loop.traffic.iloc[:1000], labels=True, start=time.time(), step=0.001)
    said: list[str] = []
    watcher = Watcher(path, log_url=url, versions=loop.models, runs=tmp_path / "runs", check_every="1s",
                      say=said.append)
    with VersionFolder(loop.models).lock():  # a retraining of another process runs
        assert [f.trigger for f in watcher.check()] == ["labels"]
        deadline = time.monotonic() + 30
        while not any("waiting for it to end" in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watcher.busy and any("another retraining of this folder runs; waiting" in line for line in said)
        assert [f.trigger for f in watcher.check()] == ["labels"]  # still 1,000 labels since no decision
        assert watcher.waiting and any("(waits for the retraining that runs)" in line for line in said)
    watcher.finish()  # the retraining ends; what waited is checked again: its labels were learned, it is dropped
    assert [(d.trigger, d.outcome, d.challenger) for d in watcher.decisions] == [("labels", "promoted", "2")]
    assert any("trigger labels waited, and no longer holds" in line for line in said)
    assert watcher.check() == [] and not watcher.busy  # no label since the decision: quiet

    fill_log(url, loop.models, loop.traffic.iloc[1000:1600], labels=True, start=time.time(), step=0.001,
             prefix="later", version="2")
    assert [f.trigger for f in watcher.check()] == ["labels"]  # 600 new labels
    watcher.finish()
    assert [(d.trigger, d.champion) for d in watcher.decisions] == [("labels", "1"), ("labels", "2")]
    store = open_log(url)
    try:
        assert [d["id"] for d in store.decisions()] == [d.id for d in watcher.decisions]
    finally:
        store.close()


def test_the_watch_command_checks_and_stops_and_refuses_an_unreachable_service(
        adult_loop: Loop, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.commands import cli_here
    from tests.retraining.traffic import ENV, cli
    from tests.serving.conftest import free_port

    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    fill_log(url, adult_loop.models, pd.read_csv(adult_loop.folder / "young.csv").iloc[:200])
    common = [str(adult_loop.folder / "adult.yaml"), "--log", url, "--versions", str(adult_loop.models),
              "--runs", str(tmp_path / "runs")]
    quiet = cli("watch", *common, "--checks", "2", "--check-every", "1s", cwd=tmp_path, env=ENV)
    assert quiet.returncode == 0, quiet.stderr
    assert "watching" in quiet.stderr and "trigger" not in quiet.stderr  # 200 young rows: nothing fires
    # the refusal through the command's entry point in this process (the watch above runs in its own)
    code, _, said = cli_here("watch", *common, "--serve", f"http://127.0.0.1:{free_port()}", cwd=tmp_path, env=ENV,
                             capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "--serve: the service does not answer" in said, said
    assert not (tmp_path / "runs").exists()
