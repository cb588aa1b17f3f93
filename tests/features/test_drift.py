"""Each feature type measures drift against its own reference profile: the same
distribution stays under the threshold, a shifted one goes over it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelmill
from modelmill.features.stats import (DriftResult, chi_square_p, distribution_drift, distribution_profile,
                                      histogram_profile, histogram_psi, jensen_shannon, psi, share_drift)
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
        "x": "wasserstein", "colour": "jensen_shannon", "flag": "jensen_shannon", "when": "wasserstein",
        "review": "wasserstein"}
    assert moved["x"].alarms == ("distribution", "out_of_range") and moved["x"].value > 1.5  # a 2σ shift
    assert "unknown_tokens" in moved["review"].alarms
    assert moved["when"].alarms == ("distribution", "out_of_range")
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
    assert not same.drifted and brighter.drifted and brighter.statistic == "brightness_contrast_shift"


def test_the_statistics() -> None:
    values = np.random.default_rng(1).normal(size=5000)
    reference = histogram_profile(values)
    assert histogram_psi(reference, np.random.default_rng(2).normal(size=5000)) < 0.02
    assert histogram_psi(reference, np.random.default_rng(2).normal(loc=1.0, size=5000)) > 0.25
    assert psi(np.array([50.0, 50.0]), np.array([50.0, 50.0])) == 0.0
    assert jensen_shannon({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert jensen_shannon({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert histogram_psi({"edges": [], "counts": []}, values) is None


def test_the_distance_ignores_tiny_shifts_at_large_samples_and_catches_half_a_sigma_at_small_ones() -> None:
    """The planning measurement behind the default: a KS test at n = 100,000 flags a 0.02σ
    shift, the normalised Wasserstein distance stays below 0.1 there and passes it for a
    0.5σ shift at n = 1,000."""
    rng = np.random.default_rng(3)
    reference = distribution_profile(rng.normal(size=50_000))
    tiny = [distribution_drift("x", reference, rng.normal(loc=0.02, size=100_000)) for _ in range(5)]
    half = [distribution_drift("x", reference, rng.normal(loc=0.5, size=1_000)) for _ in range(20)]
    assert all(r.p_value is not None and r.p_value < 0.01 for r in tiny)  # the test alone would cry wolf
    assert not any(r.drifted for r in tiny) and max(r.value or 0 for r in tiny) < 0.1
    assert all(r.drifted and r.alarms == ("distribution",) for r in half)


def test_small_windows_need_the_change_to_be_beyond_chance() -> None:
    rng = np.random.default_rng(4)
    reference = distribution_profile(rng.exponential(size=20_000))
    windows = [distribution_drift("x", reference, rng.exponential(size=50)) for _ in range(200)]
    assert sum(r.value is not None and r.value > 0.1 for r in windows) > 20  # noise passes the distance
    assert sum(r.drifted for r in windows) <= 4  # but rarely the test too
    # rare categories are pooled: 40 categories of 0.5% each do not look drifted in 200 rows
    shares = {"big": 0.8, **{f"rare{i}": 0.005 for i in range(40)}}
    names = list(shares)
    small = [share_drift("c", shares, pd.Series(rng.choice(names, 200, p=list(shares.values()))).value_counts()
                         .to_dict()) for _ in range(100)]
    assert sum(r.drifted for r in small) <= 2


def test_data_quality_alarms() -> None:
    reference = distribution_profile(np.arange(1000.0))
    values = np.concatenate([np.arange(0.0, 800.0), np.full(100, 5000.0), np.full(100, np.nan)])
    result = distribution_drift("x", reference, values)
    assert result.details["out_of_range_share"] == pytest.approx(100 / 900)
    assert set(result.alarms) >= {"out_of_range"} and result.details["missing_rate"] == pytest.approx(0.1)
    worse = distribution_drift("x", reference, np.concatenate([np.arange(0.0, 800.0), np.full(200, np.nan)]))
    assert "missing" in worse.alarms
    assert chi_square_p(np.array([50.0, 50.0]), np.array([0.0, 0.0])) is None
    assert chi_square_p(np.array([100.0, 0.0]), np.array([90.0, 10.0])) == pytest.approx(0.0)
    assert DriftResult.measured("x", "wasserstein", 0.3, 0.1).score == pytest.approx(3.0)
