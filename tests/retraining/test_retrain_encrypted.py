"""Retraining an encrypted champion: the challenger's run (checkpoints, plots) and bundle are
sealed with the champion's key, never written in clear."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pandas as pd

import modelmill
from modelmill.bundle import read_bundle
from modelmill.config.monitoring import RetrainConfig
from modelmill.encryption import PREFIX
from modelmill.predictor import Predictor
from modelmill.retraining.data import Labelled, TrainingRows
from modelmill.retraining.retrain import Champion, _judge, _train_challenger
from tests.conftest import base_config, make_frame

KEY = bytes(range(32))


def _logged(frame: pd.DataFrame) -> pd.DataFrame:
    moments = pd.date_range("2026-01-01", periods=len(frame), freq="min")
    return frame.assign(logged_at=moments, labelled_at=moments)


def test_the_challenger_of_an_encrypted_champion_is_sealed_with_its_key(tmp_path: Path) -> None:
    config = base_config(training={"epochs": 2, "progress": False})
    champion_path = modelmill.Pipeline(config).fit(make_frame(300)).save(tmp_path / "models" / "1", key=KEY)
    bundle = read_bundle(champion_path, KEY)
    champion = Champion("1", bundle, Predictor.from_bundle(bundle))
    rows = TrainingRows(train=make_frame(300, seed=1), valid=None, test=make_frame(100, seed=2), original=300,
                        added=0, test_copies=0)
    labelled = Labelled(learn=_logged(make_frame(40, seed=3)), held_back=_logged(make_frame(120, seed=4)), total=160,
                        earlier=[])
    pipeline = modelmill.Pipeline(config)
    run_dir = tmp_path / "runs" / "tiny" / "challenger"
    run_dir.mkdir(parents=True)
    _train_challenger(pipeline, rows, run_dir, champion)
    decision = _judge(pipeline, champion, labelled, rows, run_dir, cast(Any, SimpleNamespace(url="sqlite:///log.db")),
                      "accuracy", RetrainConfig(bootstrap=100), "manual", time.perf_counter())
    assert decision.bundle == run_dir / "bundle"
    files = [f for f in run_dir.rglob("*") if f.is_file()]
    assert {"checkpoints/last.safetensors", "plots/roc.png", "bundle/manifest.json", "bundle/weights.safetensors"} \
        <= {str(f.relative_to(run_dir)) for f in files}
    assert all(f.read_bytes().startswith(PREFIX) for f in files), [f for f in files
                                                                   if not f.read_bytes().startswith(PREFIX)]
    challenger = read_bundle(decision.bundle, KEY)
    assert challenger.encrypted and challenger.lineage.action == "retrained"
    assert challenger.lineage.parent == bundle.digest
