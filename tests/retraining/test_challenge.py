"""The promotion rule's pieces on their own: the paired gain and its signs (errors such as
RMSE are better lower), the tolerance (relative for errors), the verdict, and the rows of a
retraining (no test row, nor a logged copy of one, is learned from; with a time split the
log's records are learned from, not only validated on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.config import load_config
from modelmill.data.split import SplitRecord
from modelmill.features import Predictions
from modelmill.retraining.challenge import Comparison, compare, judge, worse_beyond
from modelmill.retraining.data import training_rows
from tests.conftest import base_config, make_frame


def numbers(values: np.ndarray) -> Predictions:
    return Predictions(labels=values, codes=values, proba=None, class_names=[])


def test_the_gain_is_positive_when_the_challenger_errs_less_and_its_interval_is_paired() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=400)
    shared = rng.normal(scale=1.0, size=400)  # what both models get wrong alike: the pairing cancels it
    champion, challenger = numbers(truth + shared + 0.3), numbers(truth + shared)
    result = compare("number", "rmse", truth, champion, challenger, confidence=0.95, resamples=300)
    assert result.champion > result.challenger and result.gain == pytest.approx(result.champion - result.challenger)
    assert result.low is not None and result.high is not None and 0 < result.low < result.gain < result.high
    swapped = compare("number", "rmse", truth, challenger, champion, confidence=0.95, resamples=300)
    assert swapped.gain == pytest.approx(-result.gain) and swapped.high is not None and swapped.high < 0


def test_scores_gain_upwards_and_an_undefined_metric_is_an_error() -> None:
    truth = np.array([0, 1] * 50)
    good = np.where(truth == 1, 0.8, 0.2)
    proba = np.column_stack([1 - good, good])
    noisy = np.column_stack([np.full(100, 0.5), np.full(100, 0.5)])
    champion = Predictions(labels=np.zeros(100), codes=np.zeros(100, dtype=np.int64), proba=noisy, class_names=["a", "b"])
    challenger = Predictions(labels=truth, codes=truth, proba=proba, class_names=["a", "b"])
    assert compare("binary", "roc_auc", truth, champion, challenger).gain == pytest.approx(0.5)
    with pytest.raises(ValueError, match="undefined"):
        compare("binary", "roc_auc", np.zeros(100, dtype=np.int64), champion, challenger)


@pytest.mark.parametrize(("metric", "champion", "challenger", "worse"), [
    ("roc_auc", 0.90, 0.895, False), ("roc_auc", 0.90, 0.88, True),  # scores: absolute
    ("rmse", 10.0, 10.05, False), ("rmse", 10.0, 10.2, True),  # errors: relative to the champion's
])
def test_the_tolerance(metric: str, champion: float, challenger: float, worse: bool) -> None:
    gain = challenger - champion if metric == "roc_auc" else champion - challenger
    assert worse_beyond(metric, Comparison(metric, 100, champion, challenger, gain), 0.01) is worse


def comparison(gain: float, low: float | None, high: float | None) -> Comparison:
    return Comparison("roc_auc", 200, 0.8, 0.8 + gain, gain, low, high)


@pytest.mark.parametrize(("recent", "test", "promote", "why"), [
    (comparison(0.05, 0.02, 0.08), comparison(0.0, None, None), True, "better on the 200"),
    (comparison(0.03, -0.01, 0.07), comparison(0.0, None, None), False, "does not exclude zero"),
    (comparison(0.05, 0.02, 0.08), comparison(-0.02, None, None), False, "worse on the original test split"),
    (comparison(0.05, None, None), comparison(0.0, None, None), False, "no bootstrap interval"),
])
def test_the_verdict(recent: Comparison, test: Comparison, promote: bool, why: str) -> None:
    verdict = judge(recent, test, margin=0.0, tolerance=0.01, confidence=0.95)
    assert verdict.promote is promote and why in verdict.reason


def test_a_margin_must_be_passed_by_the_intervals_lower_end() -> None:
    verdict = judge(comparison(0.05, 0.02, 0.08), comparison(0.0, None, None), margin=0.03, tolerance=0.01,
                    confidence=0.95)
    assert not verdict.promote and "does not pass the margin 0.03" in verdict.reason


def rows_of(split: dict[str, Any]) -> tuple[Any, pd.DataFrame, SplitRecord, pd.DataFrame]:
    config = load_config(base_config(data={"source": "data.csv", "split": split}))
    original = make_frame(rows=60, seed=4)
    columns = [f.name for f in config.features] + [config.target.name]
    test = original.iloc[:10]
    record = SplitRecord.of(test, source="data.csv", settings=config.data.split, columns=columns,
                            rows={"train": 40, "valid": 10, "test": 10})
    learn = make_frame(rows=30, seed=5)
    learn.loc[0] = original.iloc[3]  # a logged record equal to a test row
    learn["x"] = learn["x"].astype(object)
    learn.loc[0, "x"] = float(original["x"].iloc[3])  # as the log's JSON keeps it
    learn["logged_at"] = pd.Timestamp("2026-12-01", tz="UTC") + pd.to_timedelta(np.arange(30), unit="min")
    learn["request_id"] = [f"r{i}" for i in range(30)]
    return config, original, record, learn


def test_no_test_row_nor_a_logged_copy_of_one_is_learned_from() -> None:
    config, original, record, learn = rows_of({"method": "stratified", "test": 0.2})
    rows = training_rows(original, None, record, config, learn)
    assert rows.test.equals(original.iloc[:10].reset_index(drop=True))
    assert (rows.original, rows.added, rows.test_copies) == (50, 29, 1) and rows.valid is None
    assert len(rows.train) == 79 and not rows.train["x"].isin(original["x"].iloc[:10]).any()


def test_with_a_time_split_the_logs_records_are_learned_from_too() -> None:
    config, original, record, learn = rows_of({"method": "time", "column": "when", "test": 0.2, "valid": 0.2})
    rows = training_rows(original, None, record, config, learn)
    assert rows.valid is not None and rows.added == 29
    logged = set(learn["x"].iloc[1:].astype(float))
    in_train = rows.train["x"].astype(float).isin(logged).sum()
    in_valid = rows.valid["x"].astype(float).isin(logged).sum()
    assert (in_train, in_valid) == (23, 6)  # the newest fifth of the records validates, the rest trains
    from_original = rows.valid[rows.valid["x"].astype(float).isin(original["x"].iloc[10:])]
    newest = pd.to_datetime(original["when"].iloc[10:]).sort_values().iloc[-10:]  # the newest fifth of the 50
    assert sorted(pd.to_datetime(from_original["when"])) == sorted(newest)


def test_fit_takes_given_test_and_validation_rows_cleaned_together() -> None:
    from modelmill.api import Pipeline

    frame = make_frame(rows=200, seed=6)
    train, valid, test = frame.iloc[:120], frame.iloc[120:160], frame.iloc[160:]
    valid = pd.concat([valid, train.iloc[:5]], ignore_index=True)  # five copies of training rows
    config = base_config(training={"epochs": 1, "batch_size": 64, "progress": False})
    pipeline = Pipeline(config).fit(train, test=test, valid=valid)
    assert pipeline.split_ is not None
    assert pipeline.split_.rows == {"train": 120, "valid": 40, "test": 40}  # the copies went with the cleaning
    assert pipeline.cleaning_ is not None and pipeline.cleaning_.duplicates_dropped == 5
    with pytest.raises(ValueError, match="valid= is given with test= only"):
        Pipeline(config).fit(train, valid=valid)


def test_records_a_retrained_champion_learned_are_never_held_back_and_names_are_never_reused(
        tmp_path: Path) -> None:
    import shutil

    from modelmill.api import Pipeline, load
    from modelmill.config.monitoring import RetrainConfig
    from modelmill.monitoring.export import open_log
    from modelmill.retraining.data import labelled_records
    from modelmill.retraining.promote import VersionFolder
    from tests.monitoring.filling import fill_log

    config = base_config(training={"epochs": 1, "batch_size": 64, "progress": False})
    Pipeline(config).fit(make_frame(rows=200, seed=7)).save(tmp_path / "models" / "1")
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    fill_log(url, tmp_path / "models", make_frame(rows=400, seed=8), labels=True, start=1_790_000_000.0)
    settings = RetrainConfig(min_holdout=20, holdout=0.25)
    store = open_log(url)
    try:
        champion = load(tmp_path / "models" / "1").parts
        first = labelled_records(store, champion, settings)
        assert (len(first.learn), len(first.held_back)) == (300, 100)
        cutoffs = first.learned()
        again = labelled_records(store, champion, settings, learned=cutoffs)  # a champion that learned the 300
        assert set(again.held_back["request_id"]) == set(first.held_back["request_id"])  # only new ones judge
        assert len(again.learn) == 300
        fill_log(url, tmp_path / "models", make_frame(rows=40, seed=9), labels=True, start=1_790_001_000.0,
                 prefix="late")
        later = labelled_records(store, champion, settings, learned=again.learned())
        assert len(later.held_back) == 110 and not later.held_back["request_id"].isin(first.learn["request_id"]).any()
    finally:
        store.close()

    folder = VersionFolder(tmp_path / "models")
    assert folder.next_version() == "2"
    (tmp_path / "models" / ".shadow").mkdir()
    shutil.copytree(tmp_path / "models" / "1", tmp_path / "models" / ".shadow" / "2")
    assert folder.next_version() == "3"  # a challenger in shadow holds its name
    assert folder.next_version(taken=["2", "7"]) == "8"  # so do the audit's challengers, whose folders are gone
