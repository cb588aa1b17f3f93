"""Data in shards on the shared two-node test cluster: a table written as a glob of CSV files
is read as a Ray Dataset; duplicates removed by hash partitioning, features fitted from merged
shard partials and shards transformed equal what the single-machine pipeline does on the whole
table. (A folder of Parquet files goes through the same stages in test_sharded_fit.py, by the
CLI.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.config.schema import (BinaryFeatureConfig, CategoryFeatureConfig, DataConfig, DateFeatureConfig,
                                     MissingConfig, NumberFeatureConfig)
from modelmill.data.clean import duplicated_rows
from modelmill.data.sources import read_table
from modelmill.errors import DataError, ModelError
from modelmill.config.targets import BinaryTargetConfig
from modelmill.features import FEATURES, TARGETS, Feature
from modelmill.sharding import ROW, Shards, drop_duplicates, fit_features, read_shards, transform_shards
from tests.ray_cluster import TestCluster

ROWS = 4_000
FILES = 4
MOMENTS = 1e-12  # relative: sums in another order (features.partials)
CONFIGS: list[Any] = [
    NumberFeatureConfig(name="amount"),  # zscore, piecewise bins, median fill
    NumberFeatureConfig(name="count", normalization="robust", missing=MissingConfig(strategy="mode")),
    CategoryFeatureConfig(name="colour", max_size=4, missing=MissingConfig(strategy="mode")),
    CategoryFeatureConfig(name="code", min_frequency=30),  # integers read as strings, with nulls
    BinaryFeatureConfig(name="flag"),
    DateFeatureConfig(name="when"),
]


def table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3, 1, ROWS), 2)
    amount[rng.random(ROWS) < 0.05] = np.nan
    count = pd.array(rng.integers(0, 40, ROWS), dtype="Int64")
    count[:ROWS // 2][rng.random(ROWS // 2) < 0.05] = pd.NA  # nulls in the first files only
    colours = np.array(["red", "green", "blue", "teal", "plum", "?"], dtype=object)
    frame = pd.DataFrame({
        "amount": amount, "count": count,
        "colour": colours[rng.integers(0, len(colours), ROWS)],
        "code": count,
        "flag": np.where(rng.random(ROWS) < 0.4, "yes", "no"),
        "when": (pd.Timestamp("2010-01-01") + pd.to_timedelta(rng.integers(0, 4_000, ROWS), unit="D")).astype(str),
        "label": rng.integers(0, 2, ROWS),
    })
    copies = rng.integers(0, ROWS, 300)  # exact duplicates, later in the table
    return pd.concat([frame, frame.iloc[copies]], ignore_index=True).sample(frac=1, random_state=seed) \
        .reset_index(drop=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("shards")
    parts = np.array_split(np.arange(ROWS + 300), FILES)
    whole = table()
    for i, rows in enumerate(parts):
        whole.iloc[rows].to_csv(folder / f"part-{i:02d}.csv", index=False)
    return {"folder": folder}


def single_machine(files: list[Path]) -> pd.DataFrame:
    """The whole table as modelmill's own reader gives it, file after file."""
    return pd.concat([read_table(DataConfig(source=str(f))) for f in sorted(files)], ignore_index=True)


def features() -> list[Feature[Any]]:
    return [FEATURES.get(config.type)(config) for config in CONFIGS]


def check_state(whole: Any, sharded: Any) -> None:
    a, b = whole.state(), sharded.state()
    summed = {"center", "scale", "edges", "year_center", "year_scale"} if whole.config.type in ("number", "date") \
        and getattr(whole.config, "normalization", "zscore") == "zscore" else {"year_center", "year_scale"}
    for key in a:
        if key in summed:
            assert b[key] == pytest.approx(a[key], rel=MOMENTS), f"{whole.name}.{key}"
        else:
            assert b[key] == a[key], f"{whole.name}.{key}"


def test_shards_are_cleaned_fitted_and_transformed_as_the_whole_table(
        ray_cluster: TestCluster, sources: dict[str, Any]) -> None:
    folder = sources["folder"]
    shards = read_shards(str(folder / "part-*.csv"), blocks=6)
    frame = single_machine(list(folder.iterdir()))
    assert shards.rows == len(frame)
    assert "count" in shards.reading.nullable  # nulls in some files only: read as the whole table reads them

    names = [c.name for c in CONFIGS] + ["label"]
    duplicated = duplicated_rows(frame[names])
    unique, dropped = drop_duplicates(shards, names, partitions=3)
    assert dropped == int(duplicated.sum()) > 0
    kept = sorted(int(row[ROW]) for row in unique.dataset.select_columns([ROW]).take_all())
    assert kept == np.flatnonzero(~duplicated).tolist()  # the first copy of each row, as on one machine

    cleaned = frame.loc[~duplicated].reset_index(drop=True)
    reference = [feature.fit(cleaned[feature.name]) for feature in features()]
    target = TARGETS.get("binary")(BinaryTargetConfig(name="label", class_weights="balanced"))
    *fitted, fitted_target = fit_features(unique, [*features(), target])  # one pass for all of them
    for whole, sharded in zip(reference, fitted):
        check_state(whole, sharded)
    assert fitted_target.state() == target.fit(cleaned["label"]).state()

    rows = sorted(transform_shards(unique, reference).take_all(), key=lambda row: row[ROW])
    for feature in reference:
        expected = feature.transform(cleaned[feature.name]).numpy()
        assert np.array_equal(np.stack([np.asarray(row[feature.name]) for row in rows]), expected), feature.name


def test_a_text_feature_is_refused_before_any_work() -> None:
    from modelmill.config.schema import TextFeatureConfig

    shards = Shards(dataset=None, source="nothing read", rows=0)  # refused before the dataset is touched
    with pytest.raises(ModelError, match=r"'colour' \(text\) cannot be fitted from shards"):
        fit_features(shards, [FEATURES.get("text")(TextFeatureConfig(name="colour"))])


def test_a_source_the_workers_cannot_read_is_a_clear_error(ray_cluster: TestCluster, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"in {tmp_path}/nowhere: nothing at {tmp_path}/nowhere"):
        read_shards(str(tmp_path / "nowhere"))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 these bytes are not Parquet")
    with pytest.raises(DataError,
                       match=rf"in {broken}: it cannot be read on the cluster: .*magic bytes.*Fix: put the data"):
        read_shards(str(broken))


def mixed_files(folder: Path, *, word: str | None) -> pd.DataFrame:
    """Three CSV files of 200 rows: codes that are digits in the first two files and letters
    in the last, sizes that are whole numbers in the first file only, rates that the first file
    leaves empty, and ``word`` (if given) among the numbers of row 450 (the last file's 50th)."""
    rng = np.random.default_rng(1)
    whole = pd.DataFrame({"amount": np.round(rng.normal(size=600), 6).astype(object),
                          "code": [str(c) for c in rng.integers(10, 14, 400)] + list(rng.choice(["A7", "B2"], 200)),
                          "size": np.concatenate([rng.integers(1, 4, 200), rng.choice([1.5, 2.0, 3.0], 400)]),
                          "rate": np.concatenate([np.full(200, np.nan), np.round(rng.random(400), 4)]),
                          "label": rng.integers(0, 2, 600)})
    if word is not None:
        whole.loc[450, "amount"] = word
    for i in range(3):
        whole.iloc[i * 200:(i + 1) * 200].to_csv(folder / f"part-{i}.csv", index=False)
    return read_table(DataConfig(source=str(_joined(folder))))  # the table as one file, read by the single machine


def _joined(folder: Path) -> Path:
    lines = [f.read_text().splitlines() for f in sorted(folder.glob("part-*.csv"))]
    joined = folder.parent / f"{folder.name}-whole.csv"
    joined.write_text("\n".join(lines[0] + [line for part in lines[1:] for line in part[1:]]) + "\n")
    return joined


def test_a_word_in_a_number_column_is_named_with_its_row_wherever_it_is(ray_cluster: TestCluster,
                                                                        tmp_path: Path) -> None:
    from modelmill.api import Pipeline
    from modelmill.config import load_config
    from modelmill.features import build_features
    from modelmill.sharding.clean import clean_shards

    (tmp_path / "bad").mkdir()
    mixed_files(tmp_path / "bad", word="abc")
    source = str(tmp_path / "bad" / "part-*.csv")
    config = {"name": "mixed", "data": {"source": source, "shards": True},
              "features": [{"name": "amount", "type": "number"}, {"name": "code", "type": "category"}],
              "target": {"name": "label", "type": "binary"}, "model": {"type": "linear"},
              "training": {"backend": "ray", "workers": 1, "epochs": 1, "progress": False}}
    settings = load_config(config)
    shards = read_shards(source)  # the column is numbers in two files and text in one: text in every block
    assert str(shards.dataset.schema().base_schema.field("amount").type) == "string"
    message = (rf"in {re.escape(source)} column 'amount' rows 450: is a number feature but holds 1 values that are "
               r"not numbers \(e.g. 'abc'\)\. Fix: .* \(counted in one block of the table; others may hold more\)$")
    with pytest.raises(DataError, match=message):
        clean_shards(shards, settings, build_features(settings))
    with pytest.raises(DataError, match=message) as raised:  # through the pipeline
        Pipeline(config).fit()
    assert "Failed to apply UDF" not in str(raised.value) and "Traceback" not in str(raised.value)
    as_target = load_config({**config, "features": [{"name": "code", "type": "category"}],
                             "target": {"name": "amount", "type": "number"}})
    with pytest.raises(DataError, match=r"column 'amount' rows 450: is a number feature but holds 1 values"):
        clean_shards(shards, as_target, build_features(as_target))  # the word in a number target

    (tmp_path / "good").mkdir()
    whole = mixed_files(tmp_path / "good", word=None)
    shards = read_shards(str(tmp_path / "good"))
    # one type in every block: integers widened to floats, and the type of the files that have values
    schema = shards.dataset.schema().base_schema
    assert (str(schema.field("size").type), str(schema.field("rate").type)) == ("double", "double")
    wider = load_config({**config, "features": [*config["features"], {"name": "size", "type": "category"},
                                                {"name": "rate", "type": "number"}]})
    cleaned, report = clean_shards(shards, wider, build_features(wider))
    assert report.rows_out == 600  # no duplicates: the fits below see the whole table
    # the codes read as numbers in two files are the whole table's text ("12"), not 12 or "12.0";
    # the sizes 1.0 of the first file are the whole table's 1.0, not 1
    fitted = fit_features(cleaned, build_features(wider))
    for sharded, local in zip(fitted, build_features(wider)):
        check_state(local.fit(whole[local.name]), sharded)
    assert set(fitted[1].state()["vocabulary"]) >= {"10", "13", "A7", "B2"}, fitted[1].state()
