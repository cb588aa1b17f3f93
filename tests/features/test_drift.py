"""Each feature type measures drift against its own reference profile: the same
distribution stays under the threshold, a shifted one goes over it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelmill
from modelmill.features.stats import histogram_profile, histogram_psi, jensen_shannon, psi
from tests.conftest import base_config, make_frame


@pytest.fixture(scope="module")
def fitted() -> modelmill.Pipeline:
    return modelmill.Pipeline(base_config(training={"epochs": 1, "batch_size": 64, "progress": False})) \
        .fit(make_frame(1000))


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["x"] = frame["x"] + 2.0
    frame["colour"] = np.where(np.arange(len(frame)) % 10 < 8, "green", frame["colour"])
    frame["flag"] = "yes"
    frame["when"] = pd.to_datetime(frame["when"]).add(pd.Timedelta(days=2000)).dt.strftime("%Y-%m-%d")
    frame["review"] = "zebra quantum xylophone " * 30
    return frame


def test_the_same_distribution_does_not_drift_and_a_shifted_one_does(fitted: modelmill.Pipeline) -> None:
    predictor, reference = fitted.parts, fitted.profile_
    json.dumps(reference)
    same = predictor.drift(reference, make_frame(1000, seed=9))
    moved = predictor.drift(reference, shifted(make_frame(1000, seed=9)))
    assert {name: r.drifted for name, r in same.items()} == dict.fromkeys(same, False), same
    assert {name: r.drifted for name, r in moved.items()} == dict.fromkeys(moved, True), moved
    assert {name: r.statistic for name, r in moved.items()} == {
        "x": "psi", "colour": "jensen_shannon", "flag": "jensen_shannon", "when": "psi", "review": "psi"}
    assert moved["review"].details["unknown_share"] > 0.9 and moved["colour"].details["unseen_share"] == 0.0
    assert all(isinstance(r.value, float) for r in moved.values())
    json.dumps({name: r.details for name, r in moved.items()})


def test_image_drift_is_the_shift_of_the_channel_means(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(60, 120, (8, 8), dtype=np.uint8) for _ in range(60)]
    frame = pd.DataFrame({"picture": pd.Series(images, dtype=object), "label": ["a", "b"] * 30})
    config = {"name": "pics", "data": {"source": "x.csv"}, "target": {"name": "label", "type": "binary"},
              "features": [{"name": "picture", "type": "image"}],
              "training": {"epochs": 1, "batch_size": 16, "progress": False}}
    pipeline = modelmill.Pipeline(config).fit(frame)
    feature, reference = pipeline.parts.features[0], pipeline.profile_["features"]["picture"]
    assert reference["pixel_mean"][0] == pytest.approx(89.5, abs=2)
    same = feature.drift(reference, pd.Series([rng.integers(60, 120, (8, 8), dtype=np.uint8) for _ in range(40)]))
    brighter = feature.drift(reference, pd.Series([rng.integers(160, 220, (8, 8), dtype=np.uint8)
                                                   for _ in range(40)]))
    assert not same.drifted and brighter.drifted and brighter.statistic == "mean_shift"


def test_the_statistics() -> None:
    values = np.random.default_rng(1).normal(size=5000)
    reference = histogram_profile(values)
    assert histogram_psi(reference, np.random.default_rng(2).normal(size=5000)) < 0.02
    assert histogram_psi(reference, np.random.default_rng(2).normal(loc=1.0, size=5000)) > 0.25
    assert psi(np.array([50.0, 50.0]), np.array([50.0, 50.0])) == 0.0
    assert jensen_shannon({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert jensen_shannon({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert histogram_psi({"edges": [], "counts": []}, values) is None
