"""`modelmill tune --backend ray`: trials run side by side on the shared two-node test
cluster through Ray Tune, with the local search's outputs; a trial that fails is reported and
the search goes on; a cluster that is not there is a clear error."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from modelmill.api import Pipeline
from modelmill.config import parse_config
from modelmill.errors import ConfigError
from modelmill.tuning import TuneSettings
from modelmill.tuning.ray_search import run_ray_study
from tests.conftest import base_config, make_frame
from tests.e2e.test_cli import cli, expect_user_error, nothing_written
from tests.ray_cluster import TestCluster

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}, {"name": "flag", "type": "binary"}]


def tiny(folder: Path, **overrides: Any) -> dict[str, Any]:
    """A small table and a linear model: a trial is a second's fit, most of it Ray's."""
    make_frame(300).to_csv(folder / "data.csv", index=False)
    settings = {"features": TABLE, "model": {"type": "linear"}, "training": {"epochs": 3, "batch_size": 64,
                                                                               "progress": False},
                "tune": {"trials": 16, "startup_trials": 4}, **overrides}
    return base_config(**settings)


def test_a_16_trial_search_on_the_cluster_writes_a_best_config_that_trains(ray_cluster: TestCluster,
                                                                           tmp_path: Path) -> None:
    import modelmill

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny(tmp_path)))
    lines: list[str] = []
    # in this process (the CLI's --backend reaches the same call: see the bad-input tests below)
    result = modelmill.tune(tmp_path / "tiny.yaml", backend="ray", final=False, runs=tmp_path / "runs",
                            progress=lines.append)
    assert sum(" complete in " in line or " pruned in " in line for line in lines) == 16, lines
    assert result.outcome.counts["complete"] + result.outcome.counts["pruned"] == 16
    folder = tmp_path / "runs" / "tune" / "tiny"
    assert result.best_path == folder / "best.yaml"
    board = pd.read_csv(folder / "leaderboard.csv")
    assert len(board) == 16 and set(board["state"]) <= {"complete", "pruned"}, board
    assert sorted(board["trial"]) == list(range(16))
    first = board[board["trial"] == 0].iloc[0]  # the config's own values come first
    defaults = parse_config(tiny(tmp_path))
    assert first["training.optimizer.lr"] == pytest.approx(defaults.training.optimizer.lr)
    assert board["training.optimizer.lr"].nunique() > 8  # Optuna proposed the others
    best = yaml.safe_load((folder / "best.yaml").read_text())
    summary = yaml.safe_load((folder / "tune.json").read_text())
    assert summary["best_value"] == board["value"].max() and summary["untuned_value"] == first["value"]
    chosen = board[board["trial"] == summary["best_trial"]].iloc[0]
    assert best["training"]["optimizer"]["lr"] == pytest.approx(chosen["training.optimizer.lr"])
    assert best["training"]["l2"] == pytest.approx(chosen["training.l2"])
    assert "Leaderboard" in (folder / "report.html").read_text()
    # what `modelmill train best.yaml` runs: the YAML read, checked and fitted
    trained = Pipeline.from_yaml(folder / "best.yaml").fit()
    assert trained.metrics_["valid_roc_auc"] == pytest.approx(summary["best_value"])


def test_trials_the_model_refuses_fail_alone_with_their_reason(ray_cluster: TestCluster, tmp_path: Path) -> None:
    # isotonic calibration is a valid config that the fit refuses on a small validation split; the
    # sampler's seed fixes which trials draw it: 1 and 3 of the first 6 (too few failures to end the search)
    config = parse_config(tiny(tmp_path, tune={"trials": 4, "startup_trials": 20, "seed": 2, "space": {
        "target.calibration": {"choices": ["none", "sigmoid", "isotonic"]},
        "training.optimizer.lr": {"low": 1e-3, "high": 1e-1, "log": True}}}))
    lines: list[str] = []
    outcome = run_ray_study(config, TuneSettings("refused", tmp_path / "runs" / "tune" / "refused"),
                            base_dir=tmp_path, progress=lines.append)
    failed = [t for t in outcome.trials if t["state"] == "fail"]
    complete = [t for t in outcome.trials if t["state"] == "complete"]
    assert [t["trial"] for t in failed] == [1, 3], outcome.trials
    assert len(complete) == 4, outcome.trials  # failed trials are replaced: 4 finished
    assert all("isotonic calibration needs at least" in t["error"] for t in failed)
    assert all(t["target.calibration"] == "isotonic" for t in failed)
    assert all(t["target.calibration"] != "isotonic" for t in complete)
    assert outcome.counts["fail"] == len(failed)
    assert any(line.startswith(f"trial {failed[0]['trial']} fail") and "isotonic" in line for line in lines), lines
    assert not any("Traceback" in line for line in lines)


def test_no_cluster_at_ray_address_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny(tmp_path)))
    done = cli("tune", "tiny.yaml", "--backend", "ray", cwd=tmp_path)
    expect_user_error(done, f"no Ray cluster answers at 127.0.0.1:{port} (RAY_ADDRESS)", "ray start --head")
    assert nothing_written(tmp_path)


def test_without_ray_the_backend_says_how_to_install(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny(tmp_path)))
    # a process where `import ray` fails as it does where the extra is not installed
    without_ray = ("import sys; sys.modules['ray'] = None; from modelmill.cli import main; "
                   "sys.argv = ['modelmill', *sys.argv[1:]]; main()")
    done = subprocess.run([sys.executable, "-c", without_ray, "tune", "tiny.yaml", "--backend", "ray"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    expect_user_error(done, "modelmill tune --backend ray needs Ray, an optional extra", "pip install 'modelmill[ray]'")
    assert nothing_written(tmp_path)


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    from modelmill.tuning import tune

    with pytest.raises(ConfigError, match="unknown tune backend 'spark'; valid: local, ray"):
        tune(parse_config(tiny(tmp_path)), base_dir=tmp_path, backend="spark")
