"""The predictor's path for a few records (no pandas) gives exactly what the frame path
gives, and refuses bad input exactly as the frame path does."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelmill
from modelmill.features import Predictions
from modelmill.predictor import FAST_ROWS, Predictor
from tests.conftest import base_config, make_frame

POOLS: dict[str, list[Any]] = {
    "x": [0.5, -1.25, 3, 0, None, math.nan, math.inf, -math.inf, 1e308, -7, np.float64(2.5), np.int64(4),
          np.float32(0.25)],
    "colour": ["red", "green", "blue", "purple", None, "", "  red  ", "?", "NA", "Red", "blue "],
    "flag": ["yes", "no", None, "maybe", "", " yes", "NO", "?"],
    "when": ["2021-03-04", "2020-01-01T10:00:00", None, "", "2022-12-31 23:59", "  2021-06-01  ", "?"],
    "review": ["great tasty", "awful bland stale", None, "", "great 🎉 lovely", "tasty " * 50, "unseen words"],
}
# Values a feature's fast path does not take: the frame path decides, errors and all.
OTHERS: dict[str, list[Any]] = {
    "x": ["1.5", " 2 ", True, 2**70, "abc"],
    "colour": [3, 2.0, True],
    "flag": [True, 1, 0.0],
    "when": ["not a date", 20210304],
    "review": [b"bytes", 42],
}


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return modelmill.Pipeline(base_config(training={"epochs": 2, "batch_size": 64, "progress": False})) \
        .fit(make_frame(300)).parts


def frame_path(predictor: Predictor, records: list[dict[str, Any]]) -> Predictions:
    return predictor.predict(pd.DataFrame.from_records(records, columns=[f.name for f in predictor.features]))


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as error:  # the very exception, type and message, is what must match
        return "error", (type(error).__name__, str(error))


def assert_same(fast: tuple[str, Any], slow: tuple[str, Any]) -> None:
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "error":
        assert fast[1] == slow[1]
        return
    a, b = fast[1], slow[1]
    assert list(a.labels) == list(b.labels) and np.array_equal(a.codes, b.codes, equal_nan=True)
    assert a.proba is not None and b.proba is not None and np.array_equal(a.proba, b.proba)


def test_many_records_give_bitwise_the_same_predictions_and_errors(predictor: Predictor) -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        rows = int(rng.integers(1, FAST_ROWS + 1))
        pools = {k: v + OTHERS[k] if trial % 3 == 2 else v for k, v in POOLS.items()}
        records = [{k: pool[int(rng.integers(len(pool)))] for k, pool in pools.items()} for _ in range(rows)]
        if trial % 7 == 0:  # keys left out are missing values
            records[0].pop("colour")
        assert_same(outcome(lambda: predictor.predict_records(records)),
                    outcome(lambda: frame_path(predictor, records)))


def test_typical_records_take_the_fast_path(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = frame_path(predictor, [{k: v[0] for k, v in POOLS.items()}])

    def no_frames(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a DataFrame was built")

    monkeypatch.setattr(pd.DataFrame, "from_records", no_frames)
    record = {k: v[0] for k, v in POOLS.items()}
    fast = predictor.predict_records([record])
    assert list(fast.labels) == list(expected.labels) and np.array_equal(fast.proba, expected.proba)
    for column, pool in POOLS.items():  # every value of the pools is the fast path's own
        predictor.predict_records([{**record, column: value} for value in pool])


@pytest.mark.parametrize("column,value,message", [
    ("x", "abc", "is a number feature but holds 1 values that are not numbers"),
    ("when", "not a date", "is a date feature but holds 1 values that are not dates"),
])
def test_bad_values_are_refused_with_the_frame_paths_error(predictor: Predictor, column: str, value: Any,
                                                           message: str) -> None:
    record = {**{k: v[0] for k, v in POOLS.items()}, column: value}
    fast, slow = outcome(lambda: predictor.predict_records([record])), outcome(lambda: frame_path(predictor, [record]))
    assert fast == slow and fast[0] == "error" and message in fast[1][1]


def test_unknown_category_and_nan_are_answered_as_the_frame_path_answers(predictor: Predictor) -> None:
    record = {**{k: v[0] for k, v in POOLS.items()}, "colour": "purple", "x": math.nan}
    assert_same(outcome(lambda: predictor.predict_records([record])), outcome(lambda: frame_path(predictor, [record])))


def test_more_records_than_the_fast_path_takes_go_the_frame_path(predictor: Predictor) -> None:
    records = [{k: v[i % len(v)] for k, v in POOLS.items()} for i in range(FAST_ROWS + 5)]
    assert_same(outcome(lambda: predictor.predict_records(records)), outcome(lambda: frame_path(predictor, records)))
