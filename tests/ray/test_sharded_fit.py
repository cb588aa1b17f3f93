"""``data.shards``: a table written as several Parquet files is fitted in shards on the shared
test cluster (read, cleaned, split by a seeded hash, features fitted from merged partials,
tensors streamed to two Ray Train workers, the test rows scored on the cluster), and the
bundle that comes back matches what the single-machine code gives on the same rows: the
cleaning report, the fitted feature state, the fingerprint and the test metric. (A worker
killed mid-training is tested in test_train.py, on the path without shards.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from modelmill import load
from modelmill.api.pipeline import Pipeline, _frame_hash
from modelmill.bundle import read_bundle
from modelmill.api.sharded import check_sharded
from modelmill.config import load_config, load_task_config
from modelmill.data.clean import clean_rows
from modelmill.errors import ConfigError, ModelError
from modelmill.features import build_features
from modelmill.sharding.split import part_of
from tests.ray.test_train import cli, finish
from tests.ray_cluster import TestCluster

pytestmark = pytest.mark.timeout(900)
ROWS, FILES = 6_000, 4


def table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=ROWS), rng.lognormal(2, 1, ROWS)
    colour = rng.choice(["red", "green", "blue", "plum"], size=ROWS)
    score = 1.5 * x + (colour == "red") - 0.2 * np.log(z) + rng.normal(scale=0.7, size=ROWS)
    count = pd.array(rng.geometric(0.15, ROWS), dtype="Int64")  # skewed: the rarest codes fall below min_frequency
    count[:ROWS // 2][rng.random(ROWS // 2) < 0.05] = pd.NA  # nulls in the first files only
    frame = pd.DataFrame({"x": x, "z": np.round(z, 2), "colour": colour, "count": count, "code": count,
                          "flag": np.where(rng.random(ROWS) < 0.4, "yes", "no"),
                          "when": (pd.Timestamp("2010-01-01") + pd.to_timedelta(rng.integers(0, 4_000, ROWS),
                                                                                unit="D")).astype(str),
                          "label": np.where(score > 0, "good", "bad").astype(object)})
    frame.loc[rng.random(ROWS) < 0.02, "label"] = None  # rows without a target
    frame.loc[rng.random(ROWS) < 0.05, "z"] = np.nan
    copies = frame.iloc[rng.integers(0, ROWS, 150)]  # exact duplicates, later in the table
    return pd.concat([frame, copies], ignore_index=True)


def config(folder: Path, **training: Any) -> dict[str, Any]:
    return {
        "name": "sharded",
        "data": {"source": str(folder), "shards": True, "split": {"method": "random", "test": 0.25, "seed": 3}},
        # pandas' nullable integers, read back from the Parquet files' metadata: a batch without a
        # null must give the category "code" the values the whole table gives it ("3", not "3.0")
        "features": [{"name": "x", "type": "number"}, {"name": "z", "type": "number"},
                     {"name": "colour", "type": "category"},
                     {"name": "count", "type": "number", "normalization": "robust", "missing": {"strategy": "mode"}},
                     {"name": "code", "type": "category", "min_frequency": 30}, {"name": "flag", "type": "binary"},
                     {"name": "when", "type": "date"}],
        "target": {"name": "label", "type": "binary"},
        "model": {"type": "mlp", "hidden": [16]},
        "training": {"epochs": 4, "batch_size": 128, "progress": False, "backend": "ray", "workers": 2,
                     **training},
        "evaluation": {"explain": 0},
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sharded") / "parquet"
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(table())), FILES)):
        table().iloc[rows].to_parquet(folder / f"part-{i:02d}.parquet", index=False)
    return folder


def test_a_table_in_shards_fits_like_the_single_machine_code_on_the_same_rows(
        ray_cluster: TestCluster, source: Path, tmp_path: Path) -> None:
    path = tmp_path / "sharded.yaml"
    path.write_text(yaml.safe_dump(config(source, backend="local", workers=1)))  # the flags choose ray
    code, _, err = finish(cli("train", str(path), "--backend", "ray", "--workers", "2", cwd=tmp_path))
    assert code == 0, err[-4000:]
    saved = tmp_path / "runs" / "sharded" / "latest" / "bundle"
    bundle = read_bundle(saved)
    settings = load_config(config(source))

    whole = table()
    assert bundle.manifest["data_sha256"] == _frame_hash(whole)  # the fingerprint the single machine records
    cleaned, report = clean_rows(whole, settings, build_features(settings))
    cleaning = bundle.cleaning_report()
    assert cleaning is not None
    for key in ("rows_in", "rows_out", "duplicates_dropped", "target_missing_dropped"):
        assert cleaning[key] == getattr(report, key) > 0, key
    assert cleaning["columns"]["z"]["missing"] == report.columns["z"]["missing"]

    # the rows each part got: the seeded hash of each kept row's position in the whole table
    kept = np.flatnonzero(~whole.duplicated().to_numpy())
    kept = kept[whole["label"].iloc[kept].notna().to_numpy()]
    assert len(kept) == len(cleaned)
    parts = part_of(kept, settings.data.split)
    metrics = bundle.metrics()
    assert metrics["rows"] == {"train": int((parts == 0).sum()), "valid": int((parts == 1).sum()),
                               "test": int((parts == 2).sum())}
    train, test = whole.iloc[kept[parts == 0]], whole.iloc[kept[parts == 2]]

    # the fitted state: the single-machine fit of the same training rows
    loaded = load(saved)
    for sharded, local in zip(loaded.parts.features, build_features(settings)):
        expected, got = local.fit(train[local.name]).state(), sharded.state()
        for key, value in expected.items():
            if isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
                assert got[key] == pytest.approx(value, rel=1e-9), f"{local.name}.{key}"
            else:
                assert got[key] == value, f"{local.name}.{key}"

    vocabulary = next(f for f in loaded.parts.features if f.name == "code").state()["vocabulary"]
    assert 0 < len(vocabulary) < train["code"].dropna().nunique()  # min_frequency merged the rarest codes

    # the test metric scored on the cluster is the bundle's own on the same test rows
    proba = loaded.predict(test)["label_probability_good"].to_numpy()
    auc = roc_auc_score(test["label"].eq("good"), proba)
    assert metrics["roc_auc"] == pytest.approx(auc, abs=1e-6)
    assert auc > 0.85  # it learned: the signal is strong
    history = bundle.history()
    assert history is not None and len(history) == 4
    assert bundle.report_html() is not None
    log = (saved.parent / "train.log").read_text()  # the stages ran in shards, the training rows streamed
    assert "rows in shards: 6,150 read" in log and "the workers' peak memory" in log, log[-3000:]


def test_what_needs_the_whole_table_is_refused_before_any_reading(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"  # never read: each refusal comes first
    with pytest.raises(ConfigError, match="which only the ray backend has. Fix: training.backend: ray"):
        check_sharded(load_config(config(nowhere, backend="local")))
    time_split = config(nowhere)
    time_split["data"]["split"] = {"method": "time", "column": "x"}
    with pytest.raises(ConfigError, match="split method 'time' is not available with data.shards"):
        check_sharded(load_config(time_split))
    dropped = config(nowhere)
    dropped["cleaning"] = {"outliers": {"method": "iqr", "action": "drop"}}
    with pytest.raises(ConfigError, match="outliers.action: drop"):
        check_sharded(load_config(dropped))
    trees = config(nowhere)
    trees["model"] = {"type": "gbdt"}
    with pytest.raises(ConfigError, match="'gbdt' fits on all training rows at once"):
        Pipeline(trees).fit()
    semicolons = config(nowhere)
    semicolons["data"]["delimiter"] = ";"
    with pytest.raises(ConfigError, match="data.delimiter: ';': shards are read as Parquet, or as comma-separated"):
        check_sharded(load_config(semicolons))
    unheld = config(nowhere)
    unheld["data"]["split"]["valid"] = 0
    unheld["target"]["threshold"] = "auto"
    with pytest.raises(ConfigError, match="data.split.valid is 0. Fix: data.split.valid above 0"):
        check_sharded(load_config(unheld))
    with pytest.raises(ConfigError, match="a frame in memory"):
        Pipeline(config(nowhere)).fit(table())
    words = config(nowhere)
    words["features"].append({"name": "colour", "type": "text"})
    words["features"] = words["features"][:2] + words["features"][3:]
    with pytest.raises(ModelError, match=r"'colour' \(text\) cannot be fitted from shards"):
        check_sharded(load_config(words))
    forecast = {"task": "forecast", "name": "f", "data": {"source": "x.csv", "shards": True},
                "series": {"time": "t", "target": "y", "horizon": 3}}
    with pytest.raises(ConfigError, match="task: forecast reads its table on one machine"):
        load_task_config(forecast)


def test_the_cli_refuses_shards_without_ray_training_before_a_run_folder(tmp_path: Path) -> None:
    path = tmp_path / "sharded.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path / "nowhere", backend="local")))
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "train", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "data.shards streams the rows to Ray Train's workers" in done.stderr + done.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("rows", [1_000, 1_025, 1_024])  # 1,025 = 32 batches of 32 and 1 row
def test_a_stream_takes_the_steps_the_schedule_counts(ray_cluster: TestCluster, rows: int) -> None:
    import ray

    from modelmill.training.batches import steps_per_epoch
    from modelmill.training.streams import TARGET, ShardStream, StreamSpec, input_column

    dataset = ray.data.from_items([{input_column(0): float(i), TARGET: i} for i in range(rows)]).materialize()
    stream = ShardStream(dataset.iterator(), StreamSpec(rows=rows, inputs=1), rank=0, world=1, seed=0)
    for epoch in (0, 1):
        batches = list(stream.batches(epoch, 32))
        assert len(batches) == steps_per_epoch(rows, 32)  # never a step more than OneCycle was sized for
        seen = np.concatenate([target.numpy() for _, target in batches])
        assert len(seen) == rows - (1 if rows % 32 == 1 else 0) and len(set(seen.tolist())) == len(seen)
        assert all(torch.equal(inputs[0].long(), target) for inputs, target in batches)
