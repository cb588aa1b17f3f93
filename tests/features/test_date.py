"""The date feature reads the forms init recognises (months, quarters, ISO weeks), the same in
training, in prediction and for a single record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import modelmill
from modelmill.config.schema import DateFeatureConfig
from modelmill.errors import DataError
from modelmill.features.date import DateFeature

QUARTERS = pd.date_range("2010-01-01", periods=24, freq="QS")
WRITTEN = [f"{q.year} Q{q.quarter}" for q in QUARTERS]


def test_quarters_transform_as_their_first_day() -> None:
    as_text = DateFeature(DateFeatureConfig(name="when")).fit(pd.Series(WRITTEN))
    as_dates = DateFeature(DateFeatureConfig(name="when")).fit(pd.Series(QUARTERS))
    assert as_text.state() == as_dates.state()
    assert torch.equal(as_text.transform(pd.Series(WRITTEN)), as_dates.transform(pd.Series(QUARTERS)))


def test_one_record_reads_as_in_a_column() -> None:
    feature = DateFeature(DateFeatureConfig(name="when")).fit(pd.Series(WRITTEN))
    column = feature.transform(pd.Series(["2019 W07", "2019 Jan", "2019 Q3"]))
    for row, value in enumerate(["2019 W07", "2019 Jan", "2019 Q3"]):
        fast = feature.fast_transform([value])
        assert fast is not None and torch.equal(fast[0], column[row])


def test_a_value_that_is_no_time_is_named() -> None:
    feature = DateFeature(DateFeatureConfig(name="when")).fit(pd.Series(WRITTEN))
    with pytest.raises(DataError, match=r"column 'when' rows 1: .*not dates \(e.g. '2019 Q7'\)"):
        feature.transform(pd.Series(["2019 Q3", "2019 Q7"]))


def test_a_predict_config_with_a_quarter_column_trains_and_predicts() -> None:
    rng = np.random.default_rng(0)
    rows = 96
    frame = pd.DataFrame({"when": WRITTEN * 4, "state": np.repeat(["a", "b", "c", "d"], 24),
                          "x": rng.normal(size=rows)})
    frame["y"] = frame["x"] * 2 + np.tile(np.arange(24) % 4, 4)
    config = {"name": "quarters", "data": {"source": "q.csv", "split": {"method": "time", "column": "when"}},
              "features": [{"name": "when", "type": "date"}, {"name": "state", "type": "category"},
                           {"name": "x", "type": "number"}],
              "target": {"name": "y", "type": "number"}, "model": {"type": "linear"},
              "training": {"epochs": 2, "progress": False}, "evaluation": {"explain": 0}}
    pipeline = modelmill.Pipeline(config).fit(frame)
    predicted = pipeline.predict(pd.DataFrame({"when": ["2016 Q1", "2016 W02"], "state": ["a", "b"], "x": [0.1, 0.2]}))
    assert len(predicted) == 2 and predicted.notna().all().all()
