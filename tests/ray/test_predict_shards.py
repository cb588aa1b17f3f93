"""`modelmill predict --backend ray`: a table in several files is predicted in shards on the
shared test cluster by a bundle loaded once per Ray actor; the Parquet files written hold
every row once, with its position, and the same predictions as the single-machine predict of
the whole table; what cannot work is refused before any reading, with the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelmill import load
from modelmill.api import Pipeline
from modelmill.bundle import read_bundle
from modelmill.errors import BundleError, ConfigError
from modelmill.api.sharded_predict import POSITION, predict_shards
from tests.conftest import base_config, make_frame
from tests.ray_cluster import TestCluster

ROWS, FILES = 900, 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A bundle (numbers, a category, a binary, a date and a text column) and the table to predict,
    written as Parquet files."""
    folder = tmp_path_factory.mktemp("predict-shards")
    make_frame(300).to_csv(folder / "data.csv", index=False)
    bundle = Pipeline(base_config(), base_dir=folder).fit().save(folder / "bundle")
    table = make_frame(ROWS, seed=7).drop(columns=["label"])  # rows to predict carry no target
    (folder / "parquet").mkdir()
    for i, rows in enumerate(np.array_split(np.arange(ROWS), FILES)):
        table.iloc[rows].to_parquet(folder / "parquet" / f"part-{i}.parquet", index=False)
    return bundle, table


def written(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted(folder.glob("*.parquet"))]).sort_values(POSITION) \
        .reset_index(drop=True)


def test_every_row_is_predicted_as_the_single_machine_predicts_it(
        ray_cluster: TestCluster, trained: tuple[Path, pd.DataFrame], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, table = trained
    expected = load(bundle).predict(table).reset_index(drop=True)
    # in this process (the CLI's --backend ray reaches the same call: see the tests below), with an
    # output path relative to this process's folder, which is not the workers'
    monkeypatch.chdir(tmp_path)
    assert predict_shards(read_bundle(bundle), str(bundle.parent / "parquet"), Path("out")) == ROWS
    assert not list(tmp_path.glob(".out.partial-*"))  # written beside it, then renamed into place
    got = written(tmp_path / "out")
    assert got[POSITION].tolist() == list(range(ROWS))  # every row once, with its position in the whole table
    assert list(got.columns) == [POSITION, *expected.columns]
    assert (got["label_predicted"] == expected["label_predicted"]).all()
    np.testing.assert_allclose(got["label_probability_good"], expected["label_probability_good"], atol=1e-6)


def test_a_value_the_model_cannot_read_is_named_with_its_row(
        ray_cluster: TestCluster, trained: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    bundle, table = trained
    bad = table.astype({"x": object})
    bad.loc[650, "x"] = "lots"  # in the last of three files
    for i, rows in enumerate(np.array_split(np.arange(ROWS), FILES)):
        bad.iloc[rows].to_csv(tmp_path / f"part-{i}.csv", index=False)
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "predict", str(bundle), str(tmp_path),
                           "-o", str(tmp_path / "out"), "--backend", "ray"],
                          capture_output=True, text=True, timeout=300)
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stderr[-3000:]
    assert (f"in {tmp_path} column 'x' rows 650: is a number feature but holds 1 values that are not numbers "
            "(e.g. 'lots')") in said, said[-2000:]
    assert "Traceback" not in said and "open an issue" not in said, said[-3000:]  # the message alone
    assert not (tmp_path / "out").exists()  # checked before any prediction is written


def test_what_cannot_be_predicted_in_shards_is_refused_before_any_reading(
        trained: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    bundle, _ = trained
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "old.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match="already holds files.*Fix: --output a new or empty folder"):
        predict_shards(read_bundle(bundle), str(tmp_path / "nowhere"), taken)
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "predict", str(bundle), str(tmp_path / "nowhere"),
                           "-o", str(taken), "--backend", "ray"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "already holds files" in " ".join(done.stderr.split()), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    with pytest.raises(BundleError, match="onnxruntime"):  # no ONNX model in the bundle: before any reading
        predict_shards(read_bundle(bundle), str(tmp_path / "nowhere"), tmp_path / "new", runtime="onnxruntime")
