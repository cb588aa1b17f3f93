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
    # five years later: the model's year input has never seen these years (it extrapolates)
    assert moved["when"].details["part"] == "year" and moved["when"].alarms == ("distribution", "out_of_range")
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
    from scipy import stats

    rng = np.random.default_rng(3)
    reference = distribution_profile(rng.normal(size=50_000))
    samples = [rng.normal(loc=0.02, size=100_000) for _ in range(5)]
    tiny = [distribution_drift("x", reference, sample) for sample in samples]
    half = [distribution_drift("x", reference, rng.normal(loc=0.5, size=1_000)) for _ in range(20)]
    assert all(stats.ks_1samp(sample, stats.norm.cdf).pvalue < 0.01 for sample in samples)  # a test cries wolf
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
    assert chi_square_p(np.array([100.0, 0.0]), np.array([90.0, 10.0])) < 0.01  # a bin the reference never filled
    assert DriftResult.measured("x", "wasserstein", 0.3, 0.1).score == pytest.approx(0.3)  # no bins: scaled to 0.1
    assert DriftResult.measured("x", "p", 0.3, 0.1, divergence=0.2).score == 0.2


def test_a_column_gone_missing_ranks_high_and_a_moved_constant_column_ranks_first() -> None:
    reference = distribution_profile(np.arange(1000.0))
    gone = distribution_drift("x", reference, np.full(200, np.nan))
    assert gone.alarms == ("missing",) and gone.score > 0.9
    constant = distribution_drift("c", distribution_profile(np.full(1000, 3.0)), np.full(200, 4.0))
    assert constant.value is None or constant.value == float("inf")
    assert "distribution" in constant.alarms and constant.score == 1.0


def test_a_missing_share_must_rise_beyond_chance() -> None:
    reference = distribution_profile(np.where(np.arange(1000) % 10 < 3, np.nan, 1.0) * np.arange(1000.0))
    # 30% missing in training; 41% in a window of 100 rows is within chance (one-sided p ≈ 0.013); in a
    # window of 1,000 rows it is not
    small = np.where(np.arange(100) < 41, np.nan, 5.0)
    large = np.where(np.arange(1000) < 410, np.nan, 5.0)
    assert "missing" not in distribution_drift("x", reference, small).alarms
    assert "missing" in distribution_drift("x", reference, large).alarms


def test_unseen_values_alarm_on_their_rise_over_training(tmp_path: Path) -> None:
    """A vocabulary keeps frequent values only: rare ones seen in training are not news."""
    rng = np.random.default_rng(5)
    common = rng.choice(["a", "b", "c"], 900).tolist()
    rare = [f"r{i}" for i in range(100)]  # 10% of training: each seen once, below min_frequency
    frame = pd.DataFrame({"kind": common + rare, "n": np.arange(1000.0), "y": rng.choice(["p", "q"], 1000)})
    config = {"name": "cats", "data": {"source": "x.csv"}, "target": {"name": "y", "type": "binary"},
              "features": [{"name": "kind", "type": "category", "min_frequency": 2}, {"name": "n", "type": "number"}],
              "training": {"epochs": 1, "batch_size": 64, "progress": False}}
    pipeline = modelmill.Pipeline(config).fit(frame)
    feature, reference = pipeline.parts.features[0], pipeline.profile_["features"]["kind"]
    assert reference["unseen_share"] == pytest.approx(0.1, abs=0.03)
    like_training = pd.Series(rng.choice(["a", "b", "c"], 900).tolist() + [f"s{i}" for i in range(100)])
    assert "unseen" not in feature.drift(reference, like_training).alarms
    news = pd.Series(rng.choice(["a", "b", "c"], 700).tolist() + [f"t{i}" for i in range(300)])
    assert "unseen" in feature.drift(reference, news).alarms


def test_images_from_the_log_are_compared_and_a_new_size_drifts() -> None:
    """The log keeps images as base64 of the file sent (serving.log.images: bytes)."""
    import base64
    import io

    from PIL import Image

    rng = np.random.default_rng(6)

    def png(side: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(60, 120, (side, side), dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    frame = pd.DataFrame({"picture": pd.Series([png(16) for _ in range(60)], dtype=object),
                          "label": ["a", "b"] * 30})
    config = {"name": "pics", "data": {"source": "x.csv"}, "target": {"name": "label", "type": "binary"},
              "features": [{"name": "picture", "type": "image", "size": [8, 8]}],
              "training": {"epochs": 1, "batch_size": 16, "progress": False}}
    pipeline = modelmill.Pipeline(config).fit(frame)
    feature, reference = pipeline.parts.features[0], pipeline.profile_["features"]["picture"]
    assert reference["log2_area_mean"] == pytest.approx(8.0)  # 16 × 16 pixels
    logged = pd.Series([base64.b64encode(png(16)).decode() for _ in range(40)])
    same = feature.drift(reference, feature.from_log(logged))
    larger = feature.drift(reference, feature.from_log(pd.Series([base64.b64encode(png(64)).decode()
                                                                  for _ in range(40)])))
    assert not same.drifted and larger.drifted and larger.details["log2_area_mean"] == pytest.approx(12.0)
    assert feature.not_comparable(pd.Series(["ab" * 32] * 3)) is not None  # only a hash of each image kept


def test_text_with_a_pretrained_encoder_drifts_when_what_it_is_about_moves(tmp_path: Path) -> None:
    """Embedding drift: the mean sentence vector of a window against the training texts'."""
    from tests.text_data import make_reviews, text_config, tiny_sentence_model

    encoder = {"type": "pretrained", "model": str(tiny_sentence_model(tmp_path / "encoder")), "tune": "frozen"}
    config = text_config(encoder, training={"epochs": 1, "batch_size": 32, "progress": False})
    pipeline = modelmill.Pipeline(config).fit(make_reviews(300, seed=1))
    feature, reference = pipeline.parts.features[0], pipeline.profile_["features"]["review"]
    assert 150 < reference["embedding"]["rows"] <= 300  # the training rows, all of them (fewer than 1,000)
    same = feature.drift(reference, make_reviews(300, seed=2)["review"])
    assert "embedding" not in same.alarms and same.details["embedding_shift"] < 0.2
    # the same words, but the shop's news instead of its reviews: tea, boxes and prices only
    other = pd.Series([" ".join(["tea", "box", "price", "arrived"] * 3)] * 300)
    moved = feature.drift(reference, other)
    assert "embedding" in moved.alarms and moved.details["embedding_shift"] > 0.2
    loaded = modelmill.load(pipeline.save(tmp_path / "bundle"))  # from a bundle: the model folder found again
    assert "embedding" in loaded.parts.features[0].drift(loaded.profile_["features"]["review"], other).alarms


def test_dates_drift_by_the_parts_the_model_reads() -> None:
    """Without the year, later dates are only time moving on; a change of season is drift."""
    from modelmill.config.schema import DateFeatureConfig
    from modelmill.features import FEATURES

    rng = np.random.default_rng(7)
    training = pd.Series((pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 730, 3000), unit="D"))
                         .strftime("%Y-%m-%d"))
    config = DateFeatureConfig(name="when", parts=["month", "weekday"])
    feature = FEATURES.get("date")(config).fit(training)
    reference = feature.profile(training)
    later = pd.Series((pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, 500), unit="D"))
                      .strftime("%Y-%m-%d"))
    summer = pd.Series((pd.Timestamp("2025-06-01") + pd.to_timedelta(rng.integers(0, 90, 500), unit="D"))
                       .strftime("%Y-%m-%d"))
    assert not feature.drift(reference, later).drifted
    moved = feature.drift(reference, summer)
    assert moved.drifted and moved.details["part"] == "month" and set(moved.details["parts"]) == {"month", "weekday"}
