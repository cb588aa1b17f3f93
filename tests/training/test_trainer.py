"""The training loop: the textbook regression, optimisers and schedulers, early stopping,
budgets, and resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import modelmill
from modelmill.training.checkpoint import load_checkpoint, save_checkpoint
from modelmill.training.optim import OPTIMIZERS, SCHEDULERS
from tests.conftest import base_config, make_frame


def regression_frame() -> pd.DataFrame:
    """100 training points and 20 more for the test split, marked in a split column."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=120)
    part = ["train"] * 100 + ["test"] * 20
    return pd.DataFrame({"x": x, "y": 2 * x + 1 + rng.normal(0, 1, size=120), "part": part})


def test_gradient_descent_recovers_the_line() -> None:
    """y = 2x + 1 + N(0, 1), 100 points, linear model, SGD with learning rate 0.1."""
    config = {
        "name": "line",
        "data": {"source": "unused", "split": {"method": "column", "column": "part"}},
        "features": [{"name": "x", "type": "number", "normalization": "none", "encoding": "scalar"}],
        "target": {"name": "y", "type": "number", "normalization": "none"},
        "model": {"type": "linear"},
        "training": {"epochs": 100, "batch_size": 100, "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.0},
                     "scheduler": {"type": "none"}, "early_stopping": {"enabled": False}, "progress": False},
    }
    frame = regression_frame()
    pipeline = modelmill.Pipeline(config).fit(frame)
    linear = pipeline.parts.model.head
    train = frame[frame["part"] == "train"]
    slope, intercept = np.polyfit(train["x"], train["y"], 1)
    assert linear.weight.item() == pytest.approx(slope, abs=1e-3)  # gradient descent reached least squares
    assert linear.weight.item() == pytest.approx(2.0, abs=0.1)
    assert linear.bias.item() == pytest.approx(1.0, abs=0.3)
    assert pipeline.metrics_["rmse"] < 1.5


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
def test_every_optimizer_learns(optimizer: str) -> None:
    config = base_config(training={"epochs": 4, "batch_size": 32, "progress": False,
                                   "optimizer": {"type": optimizer}, "scheduler": {"type": "none"}})
    pipeline = modelmill.Pipeline(config).fit(make_frame(600))
    assert pipeline.metrics_["roc_auc"] > 0.8, pipeline.metrics_


@pytest.mark.parametrize("scheduler", SCHEDULERS.names())
def test_every_scheduler_runs(scheduler: str) -> None:
    config = base_config(training={"epochs": 3, "progress": False, "scheduler": {"type": scheduler}})
    pipeline = modelmill.Pipeline(config).fit(make_frame(300))
    assert pipeline.result_ is not None and pipeline.result_.epochs_run == 3


def test_early_stopping_on_named_metric_and_penalties() -> None:
    config = base_config(training={
        "epochs": 60, "progress": False, "l1": 1e-4, "l2": 1e-4, "grad_clip": 1.0,
        "early_stopping": {"metric": "accuracy", "patience": 2},
    })
    pipeline = modelmill.Pipeline(config).fit(make_frame(300))
    result = pipeline.result_
    assert result is not None and result.epochs_run < 60
    assert "early stopping" in result.stop_reason
    assert result.best_epoch == result.epochs_run - 2
    assert "valid_accuracy" in result.history[0]


def test_unknown_early_stopping_metric_lists_valid_ones() -> None:
    config = base_config(training={"progress": False, "early_stopping": {"metric": "acuracy"}})
    with pytest.raises(modelmill.ConfigError, match="did you mean 'accuracy'"):
        modelmill.Pipeline(config).fit(make_frame(100))


def test_time_budget_stops_training() -> None:
    config = base_config(training={"epochs": 10_000, "progress": False, "time_budget": 0.5,
                                   "early_stopping": {"enabled": False}})
    started = time.perf_counter()
    pipeline = modelmill.Pipeline(config).fit(make_frame(300))
    assert pipeline.result_ is not None and "time budget" in pipeline.result_.stop_reason
    assert time.perf_counter() - started < 30


def test_class_weights_and_multiclass_and_regression_targets() -> None:
    frame = make_frame(500)
    multi = modelmill.Pipeline(base_config(target={"name": "kind", "type": "category", "class_weights": "balanced"},
                                           training={"epochs": 20, "progress": False}))
    assert multi.fit(frame).metrics_["accuracy"] > 0.6
    weighted = modelmill.Pipeline(base_config(target={"name": "label", "type": "binary", "class_weights": {"good": 2.0}}))
    assert weighted.fit(frame).metrics_["roc_auc"] > 0.8
    regression = modelmill.Pipeline(base_config(target={"name": "amount", "type": "number", "loss": "huber"},
                                                data={"source": "x", "split": {"method": "random"}}))
    assert regression.fit(frame).metrics_["r2"] > 0.0


def test_checkpoint_survives_sigkill_during_its_write(tmp_path: Path) -> None:
    """A process killed in the middle of writing a checkpoint leaves the previous one usable."""
    path = tmp_path / "last.safetensors"
    script = textwrap.dedent(f"""
        import os, signal, torch, safetensors.torch as st
        from pathlib import Path
        from modelmill.training import checkpoint
        path = Path({str(path)!r})
        checkpoint.save_checkpoint(path, {{"model": {{"w": torch.ones(3)}}, "loop": {{"epoch": 1}}}})
        def dying_save(tensors, filename, metadata=None):
            with open(filename, "wb") as handle:
                handle.write(b"\\x00" * 10)
                handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.save_file = dying_save
        checkpoint.save_checkpoint(path, {{"model": {{"w": torch.zeros(3)}}, "loop": {{"epoch": 2}}}})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    parts = load_checkpoint(path)
    assert parts["loop"]["epoch"] == 1 and torch.equal(parts["model"]["w"], torch.ones(3))


def test_checkpoint_round_trips_optimizer_state(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "c.safetensors", {"optimizer": optimizer.state_dict()})
    restored = torch.optim.Adam(model.parameters())
    restored.load_state_dict(load_checkpoint(tmp_path / "c.safetensors")["optimizer"])
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def _resume_config(tmp_path: Path) -> Path:
    make_frame(12_000, seed=1).to_csv(tmp_path / "data.csv", index=False)
    # with a moving average of the weights: its state must come back from the checkpoint too
    config = base_config(training={"epochs": 5, "batch_size": 16, "deterministic": True, "progress": False,
                                   "threads": 1, "early_stopping": {"enabled": False}, "ema": 0.99})
    config["data"]["source"] = "data.csv"
    config["model"] = {"type": "mlp", "hidden": [64, 64]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path) -> None:
    config = _resume_config(tmp_path)
    cli = [sys.executable, "-m", "modelmill.cli", "train", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    victim = subprocess.Popen([*cli, "--runs", str(tmp_path / "b")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    checkpoints = tmp_path / "b" / "tiny"
    while time.monotonic() < deadline and not list(checkpoints.glob("*/checkpoints/last.safetensors")):
        time.sleep(0.01)
    time.sleep(0.3)  # into the second epoch
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not list(checkpoints.glob("*/bundle")), "the run finished before it could be killed"
    # The uninterrupted run goes alongside the resumed one: one thread each, and
    # deterministic, so sharing the machine changes no number.
    uninterrupted = subprocess.Popen([*cli, "--runs", str(tmp_path / "a")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
    subprocess.run([*cli, "--runs", str(tmp_path / "b"), "--resume"], check=True, capture_output=True, env=env)
    _, errors = uninterrupted.communicate(timeout=300)
    if uninterrupted.returncode:
        raise subprocess.CalledProcessError(uninterrupted.returncode, cli, stderr=errors)
    first = modelmill.load(tmp_path / "a" / "tiny" / "latest").parts.model.state_dict()
    second = modelmill.load(tmp_path / "b" / "tiny" / "latest").parts.model.state_dict()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


def test_cuda_device_is_refused_clearly_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    config = base_config(training={"device": "cuda", "progress": False})
    with pytest.raises(modelmill.ConfigError, match="no CUDA GPU is available"):
        modelmill.Pipeline(config).fit(make_frame(100))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_matches_cpu_quality() -> None:
    frame = make_frame(600)
    cpu = modelmill.Pipeline(base_config(training={"device": "cpu", "progress": False})).fit(frame)
    gpu = modelmill.Pipeline(base_config(training={"device": "cuda", "progress": False})).fit(frame)
    assert abs(cpu.metrics_["roc_auc"] - gpu.metrics_["roc_auc"]) < 0.05
    assert next(gpu.parts.model.parameters()).device.type == "cpu"  # handed back on the CPU for saving


@pytest.mark.parametrize("rows,expected", [(100, 16), (720, 16), (5_000, 128), (23_443, 256), (10**6, 256)])
def test_auto_batch_size_gives_small_data_enough_steps(rows: int, expected: int) -> None:
    from modelmill.training.batches import resolve_batch_size

    assert resolve_batch_size("auto", rows) == expected
    assert resolve_batch_size(64, rows) == 64
