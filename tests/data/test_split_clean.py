"""Splitting (every method, seeded) and cleaning (duplicates, missing, outliers, report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelmill
from modelmill.config import parse_config
from modelmill.config.schema import SplitConfig
from modelmill.data.clean import clean_rows, drop_outlier_rows, duplicated_rows
from modelmill.features import build_features
from modelmill.data.split import split_frame
from modelmill.errors import DataError
from tests.conftest import base_config, make_frame


def sizes(parts: tuple[pd.DataFrame, ...]) -> list[int]:
    return [len(p) for p in parts]


def test_random_split_is_seeded_and_sized() -> None:
    frame = make_frame(1000)
    config = SplitConfig(method="random", test=0.2, valid=0.1, seed=3)
    first = split_frame(frame, config, target="label", classify=True)
    again = split_frame(frame, config, target="label", classify=True)
    assert sizes(first) == [720, 80, 200]
    assert first[2]["x"].tolist() == again[2]["x"].tolist()
    other = split_frame(frame, SplitConfig(method="random", seed=4), target="label", classify=True)
    assert first[2]["x"].tolist() != other[2]["x"].tolist()


def test_stratified_split_keeps_class_shares() -> None:
    frame = make_frame(1000)
    train, _, test = split_frame(frame, SplitConfig(method="stratified"), target="label", classify=True)
    share = (frame["label"] == "good").mean()
    assert abs((test["label"] == "good").mean() - share) < 0.01
    assert abs((train["label"] == "good").mean() - share) < 0.01


def test_time_split_puts_newest_rows_in_test() -> None:
    frame = make_frame(500)
    train, valid, test = split_frame(frame, SplitConfig(method="time", column="when"), target="label", classify=True)
    assert pd.to_datetime(train["when"]).max() <= pd.to_datetime(valid["when"]).min()
    assert pd.to_datetime(valid["when"]).max() <= pd.to_datetime(test["when"]).min()


def test_time_split_orders_quarters_and_refuses_values_that_are_no_time() -> None:
    quarters = [f"{2000 + q // 4} Q{q % 4 + 1}" for q in range(40)]
    frame = pd.DataFrame({"quarter": quarters[::-1], "label": ["a", "b"] * 20})  # newest first in the file
    train, valid, test = split_frame(frame, SplitConfig(method="time", column="quarter", test=0.25, valid=0.1),
                                     target="label", classify=True)
    assert sorted(test["quarter"]) == quarters[-10:]
    frame.loc[3, "quarter"] = "soon"
    with pytest.raises(DataError, match="quarter"):
        split_frame(frame, SplitConfig(method="time", column="quarter"), target="label", classify=True)


def test_group_split_never_shares_a_group() -> None:
    frame = make_frame(600).assign(customer=lambda f: np.arange(len(f)) % 37)
    train, valid, test = split_frame(frame, SplitConfig(method="group", column="customer"), target="label",
                                     classify=True)
    groups = [set(part["customer"]) for part in (train, valid, test)]
    assert not (groups[0] & groups[2]) and not (groups[0] & groups[1]) and not (groups[1] & groups[2])


def test_column_split_and_its_errors() -> None:
    frame = make_frame(10).assign(part=["train"] * 6 + ["valid"] * 2 + ["test"] * 2)
    train, valid, test = split_frame(frame, SplitConfig(method="column", column="part"), target="label",
                                     classify=True)
    assert sizes((train, valid, test)) == [6, 2, 2] and "part" not in train.columns
    with pytest.raises(DataError, match="column 'part'.*other than train/valid/test"):
        split_frame(frame.assign(part="holdout"), SplitConfig(method="column", column="part"),
                    target="label", classify=True)


def test_files_split_reads_the_test_file(tmp_path: Path, data_csv: Path) -> None:

    folder = tmp_path
    make_frame(100, seed=9).to_csv(folder / "holdout.csv", index=False)
    raw = base_config(data={"source": "data.csv", "split": {"method": "files", "test_source": "holdout.csv"}})
    pipeline = modelmill.Pipeline(raw, base_dir=folder).fit()
    assert pipeline.metrics_["rows"]["test"] == 100


def test_split_needs_its_column() -> None:
    with pytest.raises(ValueError, match="needs `column`"):
        SplitConfig(method="time")


def test_duplicates_dropped_exactly_and_counted() -> None:
    frame = make_frame(50)
    doubled = pd.concat([frame, frame.iloc[:7]], ignore_index=True)
    assert duplicated_rows(doubled).sum() == 7
    config = parse_config(base_config())
    cleaned, report = clean_rows(doubled, config, build_features(config))
    assert len(cleaned) == 50 and report.duplicates_dropped == 7
    keeping = parse_config(base_config(cleaning={"duplicates": "keep"}))
    kept, _ = clean_rows(doubled, keeping, build_features(keeping))
    assert len(kept) == 57


def test_missing_target_and_drop_strategy_rows_are_removed_and_reported() -> None:
    frame = make_frame(100)
    frame.loc[[1, 2], "label"] = None
    frame.loc[[5], "x"] = np.nan
    raw = base_config()
    raw["features"][0]["missing"] = {"strategy": "drop"}
    config = parse_config(raw)
    cleaned, report = clean_rows(frame, config, build_features(config))
    assert len(cleaned) == 97
    assert report.target_missing_dropped == 2 and report.columns["x"]["rows_dropped"] == 1


def test_outlier_rows_dropped_from_training_only() -> None:
    frame = make_frame(200)
    frame.loc[3, "x"] = 1e6
    config = parse_config(base_config(cleaning={"outliers": {"method": "zscore", "action": "drop"}}))
    _, report = clean_rows(frame, config, build_features(config))
    kept = drop_outlier_rows(frame, config, build_features(config), report)
    assert len(kept) == 199 and report.columns["x"]["outlier_rows_dropped"] == 1


def test_outliers_clipped_and_counted_in_the_run_report() -> None:
    frame = make_frame(300)
    frame.loc[:5, "x"] = 1e6
    raw = base_config(cleaning={"outliers": {"method": "iqr", "action": "clip"}})
    pipeline = modelmill.Pipeline(raw).fit(frame)
    assert pipeline.cleaning_ is not None
    column = pipeline.cleaning_.columns["x"]
    assert column["outliers_clipped"] >= 1 and column["clip_bounds"][1] < 1e6


def test_infinite_numbers_are_read_as_missing_in_training_and_predicting() -> None:
    frame = make_frame(300)
    frame.loc[[4, 9], "x"] = [np.inf, -np.inf]
    frame.loc[[12], "x"] = np.nan
    pipeline = modelmill.Pipeline(base_config()).fit(frame)
    assert pipeline.cleaning_ is not None
    assert pipeline.cleaning_.columns["x"]["missing"] == 3 and pipeline.cleaning_.rows_out == 300
    x = next(feature for feature in pipeline.parts.features if feature.name == "x")
    assert np.isfinite([x.state()["center"], x.state()["scale"], x.state()["fill"]]).all()  # fitted on finite values
    rows = frame.loc[[4, 9]].drop(columns=["label"])
    as_missing = rows.assign(x=np.nan)
    pd.testing.assert_frame_equal(pipeline.predict(rows).reset_index(drop=True),
                                  pipeline.predict(as_missing).reset_index(drop=True))


def test_a_number_target_s_infinities_are_rows_without_a_target() -> None:
    raw = base_config()
    frame = make_frame(200)
    raw["target"] = {"name": "x", "type": "number"}
    raw["features"] = [f for f in raw["features"] if f["name"] != "x"]
    frame.loc[[3, 7], "x"] = [np.inf, -np.inf]
    config = parse_config(raw)
    cleaned, report = clean_rows(frame, config, build_features(config))
    assert report.target_missing_dropped == 2 and len(cleaned) == 198
    with pytest.raises(DataError, match="column .x.: is empty \(every value is missing\)"):
        modelmill.Pipeline(base_config()).fit(make_frame(200).assign(x=np.inf))
