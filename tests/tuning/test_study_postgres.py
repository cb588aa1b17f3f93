"""A study kept in a real PostgreSQL server (started by the test) instead of SQLite, and
a study database that cannot be opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from modelmill.errors import ConfigError
from modelmill.tuning import TuneSettings, run_study
from tests.postgres import postgres_server
from tests.tuning.test_study import tiny


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_a_study_in_postgresql_resumes_from_there(postgres: str, tmp_path: Path) -> None:
    config = tiny(tmp_path, tune={"trials": 3, "startup_trials": 1, "space": {
        "model.members.0.leaves": {"low": 2, "high": 32}}})
    settings = TuneSettings("pg-study", tmp_path / "runs" / "tune" / "pg-study", storage=postgres)
    first = run_study(config, settings, base_dir=tmp_path)
    assert first.counts["complete"] + first.counts["pruned"] == 3
    assert not (settings.folder / "study.db").exists()  # nothing in SQLite
    stored = optuna.load_study(study_name="pg-study", storage=postgres.replace("postgresql://", "postgresql+psycopg://"))
    assert len(stored.trials) == 3 and stored.user_attrs["config_name"] == "tiny"
    more = run_study(config, TuneSettings("pg-study", settings.folder, storage=postgres, trials=5), base_dir=tmp_path)
    assert more.counts["complete"] + more.counts["pruned"] == 5  # the same study, two more trials


def test_a_study_database_that_cannot_be_opened_is_a_clear_error(postgres: str, tmp_path: Path) -> None:
    config = tiny(tmp_path, tune={"trials": 1, "space": {"model.members.0.leaves": {"low": 2, "high": 32}}})
    down = postgres.replace("postgres@", "postgres:s3cret@").rsplit(":", 1)[0] + ":1/postgres"
    with pytest.raises(ConfigError) as caught:
        run_study(config, TuneSettings("x", tmp_path / "x", storage=down), base_dir=tmp_path)
    assert "cannot be opened" in str(caught.value) and "s3cret" not in str(caught.value)
    with pytest.raises(ConfigError, match="is not a database URL"):
        run_study(config, TuneSettings("x", tmp_path / "x", storage="not a url"), base_dir=tmp_path)


def test_a_trial_cut_off_on_another_machine_is_found_by_its_silence(postgres: str, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.e2e.test_tune import SPACE, write

    write(tmp_path, tune={"trials": 4, "startup_trials": 2, "space": SPACE, "heartbeat": 1})
    command = [sys.executable, "-m", "modelmill.cli", "tune", "tiny.yaml", "--no-final", "--storage", postgres]
    url = postgres.replace("postgresql://", "postgresql+psycopg://")
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    cut: list[optuna.trial.FrozenTrial] = []
    while time.monotonic() < deadline and not cut:  # a trial in the middle of its fit
        try:
            trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
        except KeyError:  # not created yet
            trials = []
        cut = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values]
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # as if that process had run on another machine: its process id says nothing here
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name("tiny")
    storage.set_trial_user_attr(storage.get_trial_id_from_study_id_trial_number(study_id, cut[0].number),
                                "host", "another-machine")
    # silent for three heartbeats before the next process starts a trial (else it might finish the
    # study's last trials before the cut one is stale, and never look again)
    time.sleep(3.5)
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    after = optuna.load_study(study_name="tiny", storage=url).get_trials()
    done = [t for t in after if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert after[cut[0].number].state == optuna.trial.TrialState.FAIL and len(done) == 4
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retries = [t for t in after if retried(t) == cut[0].number]
    assert len(retries) == 1 and retries[0].params == cut[0].params and retries[0] in done
