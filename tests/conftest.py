"""Shared test data: small frames generated in the test, with a learnable target."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest


def make_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numbers, categories, a binary, dates and text, with a target that depends on them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    flag = rng.choice(["yes", "no"], size=rows)
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, rows), unit="D")
    words = np.where(x > 0, "great tasty lovely", "awful bland stale")
    score = 1.5 * x + (colour == "red") * 1.0 - (flag == "no") * 0.5 + rng.normal(scale=0.5, size=rows)
    return pd.DataFrame({
        "x": x,
        "colour": colour,
        "flag": flag,
        "when": dates.strftime("%Y-%m-%d"),
        "review": words,
        "amount": np.round(np.abs(score) * 100, 2),
        "label": np.where(score > 0.3, "good", "bad"),
        "kind": np.where(score > 1, "high", np.where(score > -0.5, "mid", "low")),
    })


def base_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "tiny",
        "data": {"source": "data.csv", "split": {"method": "stratified", "test": 0.25, "seed": 0}},
        "features": [
            {"name": "x", "type": "number"},
            {"name": "colour", "type": "category"},
            {"name": "flag", "type": "binary"},
            {"name": "when", "type": "date"},
            {"name": "review", "type": "text", "tokenizer": {"min_frequency": 1}},
        ],
        "target": {"name": "label", "type": "binary"},
        "model": {"type": "mlp", "hidden": [16]},
        "training": {"epochs": 5, "batch_size": 64, "progress": False},
        # the report's explanations (importance, records, maps) are tested in tests/explain/ and
        # tests/evaluation/; elsewhere they would only add their seconds to every fit
        "evaluation": {"explain": 0},
    }
    config.update(overrides)
    return config


@pytest.fixture(autouse=True)
def _no_ambient_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test tracks where it says, never to an MLflow server the machine's environment names."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def data_csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (./test runs one worker per core) each worker has a core of its
    own: torch, the servers and the subprocesses it starts then size their threads to one
    core, instead of every worker's threads fighting over all of them."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})
