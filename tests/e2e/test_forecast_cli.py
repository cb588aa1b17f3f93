"""`task: forecast` through the CLI in real subprocesses: train (backtest, bundle), predict,
evaluate, render-config, a run killed with SIGKILL and resumed, and the bad inputs that end
in one clear message (exit 2) with nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.e2e.test_cli import cli, expect_user_error, nothing_written
from tests.forecasting.test_pipeline import HORIZON, config, future_rows, shops


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("forecast")
    shops().to_csv(folder / "shops.csv", index=False)
    (folder / "shops.yaml").write_text(yaml.safe_dump(config()))
    done = cli("train", "shops.yaml", cwd=folder)
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    assert "backtest metrics" in flat and "mase" in flat
    return folder


def test_train_writes_a_forecast_bundle_with_its_backtest(trained: Path) -> None:
    bundle = trained / "runs" / "shops" / "latest" / "bundle"
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["points"] == 3 * HORIZON * 2 and len(metrics["cutoffs"]) == 3
    assert yaml.safe_load((bundle / "config.yaml").read_text())["task"] == "forecast"
    assert (bundle / "plots" / "forecast_1.png").is_file()


def test_predict_writes_the_next_horizon_of_every_series(trained: Path) -> None:
    frame = pd.read_csv(trained / "shops.csv")
    pd.concat([frame, future_rows(frame, 90)]).to_csv(trained / "recent.csv", index=False)
    done = cli("predict", "runs/shops/latest", "recent.csv", "-o", "forecasts.csv", cwd=trained)
    assert done.returncode == 0, done.stderr
    assert f"wrote {2 * HORIZON} forecasts" in done.stderr
    written = pd.read_csv(trained / "forecasts.csv")
    assert list(written.columns) == ["shop", "date", "forecast", "lower", "upper"]
    assert written["date"].iloc[0] == "2024-03-31"


def test_evaluate_and_render_config(trained: Path) -> None:
    shops(120, seed=4).to_csv(trained / "later.csv", index=False)
    done = cli("evaluate", "runs/shops/latest", "later.csv", "-o", "evaluation", cwd=trained)
    assert done.returncode == 0, done.stderr
    assert json.loads((trained / "evaluation" / "metrics.json").read_text())["points"] == 2 * HORIZON
    rendered = cli("render-config", "shops.yaml", cwd=trained)
    assert rendered.returncode == 0, rendered.stderr
    assert yaml.safe_load(rendered.stdout)["backtest"] == {"cutoffs": 3, "step": None, "interval": 0.8}


@pytest.mark.parametrize("change,fragments", [
    ("duplicate", ["2 rows share a time step", "series 'north'", "Fix:"]),
    ("irregular", ["is not regular at step D", "Fix:"]),
    ("short", ["hold no more steps than the horizon", "Fix:"]),
])
def test_bad_series_end_in_one_message(tmp_path: Path, change: str, fragments: list[str]) -> None:
    frame = shops()
    if change == "duplicate":
        frame = pd.concat([frame, frame.iloc[[10]]])
    elif change == "irregular":
        frame = frame.drop(index=[10])
    else:
        frame = shops(5)
    frame.to_csv(tmp_path / "shops.csv", index=False)
    (tmp_path / "shops.yaml").write_text(yaml.safe_dump(config()))
    expect_user_error(cli("train", "shops.yaml", cwd=tmp_path), *fragments)
    assert nothing_written(tmp_path)


def test_missing_future_covariates_end_in_one_message(trained: Path) -> None:
    expect_user_error(cli("predict", "runs/shops/latest", "shops.csv", "-o", "out.csv", cwd=trained),
                      "column 'price'", "future covariate values are missing", "Fix:")
    assert not (trained / "out.csv").exists()


def test_a_run_killed_mid_backtest_resumes_where_it_stopped(tmp_path: Path) -> None:
    """SIGKILL while the deep model trains at the second cut-off; --resume reuses the first
    cut-off's forecasts and finishes the run."""
    shops(120).to_csv(tmp_path / "shops.csv", index=False)
    slow = config("deep", training={"epochs": 12, "progress": False, "early_stopping": {"enabled": False}},
                  evaluation={"plots": False, "report": False})
    slow["model"] = {"type": "deep", "hidden": [32, 32]}
    (tmp_path / "shops.yaml").write_text(yaml.safe_dump(slow))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "modelmill.cli", "train", "shops.yaml"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "runs" / "shops"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(first.glob("*/checkpoints/backtest/cutoff-1/forecasts.json")):
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list(first.glob("*/bundle")), "the run was killed after it finished"
    resumed = cli("train", "shops.yaml", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    log = next(first.glob("*/train.log")).read_text()
    assert "cutoff-1 finished before; its forecasts are reused" in log
    metrics = json.loads(next(first.glob("*/bundle/metrics.json")).read_text())
    assert len(metrics["cutoffs"]) == 3 and metrics["points"] == 3 * HORIZON * 2
    # the equality with an uninterrupted run is checked in tests/forecasting/test_pipeline.py (cut-offs) and
    # tests/forecasting/test_deep.py (the trainer's checkpoint), where it costs seconds, not minutes
