"""`modelmill tune` through real processes: a search killed with SIGKILL resumes with no
finished trial lost or run twice, two processes share one study, the best config trains to
the best trial's validation score, and bad input ends in one clear message with nothing
written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from tests.conftest import base_config, make_frame
from tests.e2e.test_cli import cli, expect_user_error

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}, {"name": "flag", "type": "binary"}]
SPACE = {"model.dropout": {"low": 0.0, "high": 0.5}, "training.optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
TUNE = [sys.executable, "-m", "modelmill.cli", "tune", "tiny.yaml", "--no-final"]


def write(folder: Path, **overrides: Any) -> Path:
    make_frame(3000).to_csv(folder / "data.csv", index=False)
    settings = {"features": TABLE, "model": {"type": "mlp", "hidden": [32]},
                "training": {"epochs": 12, "batch_size": 32, "threads": 1, "progress": False},
                "tune": {"trials": 8, "startup_trials": 2, "space": SPACE}, **overrides}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(base_config(**settings)))
    return path


def trials_of(folder: Path, study: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{folder / 'runs' / 'tune' / study / 'study.db'}"
    try:
        return optuna.load_study(study_name=study, storage=url).get_trials()
    except Exception:  # not created yet
        return []


def finished(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def test_sigkill_then_restart_continues_the_same_study(tmp_path: Path) -> None:
    write(tmp_path)
    first = subprocess.Popen(TUNE, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill it in the middle of a trial, after two have finished
        trials = trials_of(tmp_path)
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values]
        if len(finished(trials)) >= 2 and running:
            break
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = {t.number: (t.state, t.value, t.params) for t in finished(trials_of(tmp_path))}
    cut = [t for t in trials_of(tmp_path) if t.state == optuna.trial.TrialState.RUNNING]
    assert len(before) >= 2 and len(cut) == 1

    second = subprocess.run(TUNE, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"trial {cut[0].number} was cut off" in second.stderr
    after = trials_of(tmp_path)
    done = finished(after)
    assert len(done) == 8  # the budget counts the first process's trials: none is run again
    for number, record in before.items():  # none lost, none changed
        trial = after[number]
        assert (trial.state, trial.value, trial.params) == record
    assert after[cut[0].number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in after if t.user_attrs.get("retry_of") == cut[0].number]
    assert len(retries) == 1 and retries[0].params == cut[0].params and retries[0] in done
    params = [json.dumps(t.params, sort_keys=True) for t in done]
    assert len(set(params)) == len(params)  # no finished trial twice


def test_two_processes_share_one_study_and_the_best_config_reproduces(tmp_path: Path) -> None:
    write(tmp_path)  # trials of about a second: both processes are still starting theirs when the other begins
    processes = [subprocess.Popen(TUNE + ["--trials", "6"], cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    trials = trials_of(tmp_path)
    done = finished(trials)
    assert 6 <= len(done) <= 7  # each process stops once the study holds 6; both may be finishing one
    assert {t.user_attrs["pid"] for t in trials} == {p.pid for p in processes}
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == len(done)

    again = cli("tune", "tiny.yaml", "--trials", "6", "--no-final", "-o", "best.yaml", cwd=tmp_path)  # nothing to run
    assert again.returncode == 0, again.stderr
    assert len(trials_of(tmp_path)) == len(trials)
    best = max((t for t in done if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value or 0)
    trained = cli("train", "best.yaml", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads((tmp_path / "runs" / "tiny" / "latest" / "bundle" / "metrics.json").read_text())
    assert metrics["valid_roc_auc"] == pytest.approx(best.value, abs=1e-12)


def test_bad_input_is_one_clear_message_with_nothing_written(tmp_path: Path) -> None:
    write(tmp_path, tune={"space": {"model.hiden": {"choices": [[8]]}}})
    expect_user_error(cli("tune", "tiny.yaml", cwd=tmp_path), "tune.space.model.hiden", "did you mean 'hidden'?")
    write(tmp_path, tune={"space": {"training.optimizer.lr": {"low": 0.01, "high": 0.001}}})
    expect_user_error(cli("tune", "tiny.yaml", cwd=tmp_path), "the range is inverted")
    write(tmp_path, tune={"space": {"model.dropout": {"low": 0.1, "high": 0.1}}})
    expect_user_error(cli("tune", "tiny.yaml", "--timeout", "10 minutes", cwd=tmp_path), "--timeout", "10m")
    assert not (tmp_path / "runs").exists()
    hidden = ("import sys; sys.modules['optuna'] = None; sys.argv = ['modelmill', 'tune', 'tiny.yaml']; "
              "from modelmill.cli import main; main()")
    write(tmp_path)
    done = subprocess.run([sys.executable, "-c", hidden], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    expect_user_error(done, "needs Optuna", "pip install 'modelmill[tune]'")
    assert not (tmp_path / "runs").exists()


def test_a_study_name_of_another_config_is_refused_untouched(tmp_path: Path) -> None:
    write(tmp_path, tune={"trials": 2, "space": SPACE})
    assert cli("tune", "tiny.yaml", "--no-final", "--study", "credit-v2", cwd=tmp_path).returncode == 0
    database = tmp_path / "runs" / "tune" / "credit-v2" / "study.db"
    stamp = database.stat().st_mtime_ns, len(trials_of(tmp_path, "credit-v2"))
    config = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({**config, "name": "other"}))
    done = cli("tune", "other.yaml", "--study", "credit-v2", cwd=tmp_path)
    expect_user_error(done, "study 'credit-v2' belongs to config 'tiny', not 'other'", "--study")
    assert (database.stat().st_mtime_ns, len(trials_of(tmp_path, "credit-v2"))) == stamp


def test_ctrl_c_stops_cleanly_and_the_cut_trial_runs_again(tmp_path: Path) -> None:
    write(tmp_path, tune={"trials": 4, "startup_trials": 2, "space": SPACE})
    # a test worker may run with SIGINT ignored, which its children would inherit: Ctrl-C as in a terminal
    first = subprocess.Popen(TUNE, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # Ctrl-C in the middle of a trial, after one has finished
        trials = trials_of(tmp_path)
        if finished(trials) and any(t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values
                                    for t in trials):
            break
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130 and "Traceback" not in stderr
    assert "interrupted" in stderr and "the same command resumes it" in stderr
    cut = [t for t in trials_of(tmp_path) if t.state == optuna.trial.TrialState.FAIL]
    assert len(cut) == 1
    second = subprocess.run(TUNE, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    after = trials_of(tmp_path)
    assert len(finished(after)) == 4
    retries = [t for t in after if t.user_attrs.get("retry_of") == cut[0].number]
    assert len(retries) == 1 and retries[0].params == cut[0].params and retries[0] in finished(after)
