"""The feature-type contract, checked for every registered type, plus each type's specifics."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from modelmill.config.schema import (
    BinaryFeatureConfig,
    CategoryFeatureConfig,
    CleaningConfig,
    DateFeatureConfig,
    ImageFeatureConfig,
    MissingConfig,
    NumberFeatureConfig,
    OutlierConfig,
    TextFeatureConfig,
)
from modelmill.config.images import ConvLayer, GlobalPoolLayer
from modelmill.errors import DataError, ModelError
from modelmill.features import FEATURES
from modelmill.features.number import NumberFeature, Standardize
from modelmill.features.piecewise import PiecewiseLinear
from tests.conftest import make_frame

CONFIGS: dict[str, Any] = {
    "number": NumberFeatureConfig(name="x"),
    "category": CategoryFeatureConfig(name="colour"),
    "binary": BinaryFeatureConfig(name="flag"),
    "date": DateFeatureConfig(name="when"),
    "text": TextFeatureConfig(name="review", tokenizer={"min_frequency": 1}),
    "image": ImageFeatureConfig(name="picture", encoder=[ConvLayer(filters=4), GlobalPoolLayer()]),
}


def contract_frame(rows: int) -> pd.DataFrame:
    """The shared frame plus a column of small gray images (arrays, as IDX/NPZ give them)."""
    frame = make_frame(rows)
    pictures = np.random.default_rng(0).integers(0, 256, (rows, 8, 8), dtype=np.uint8)
    frame["picture"] = pd.Series(list(pictures), dtype=object)
    return frame


def test_every_registered_type_has_a_contract_case() -> None:
    assert sorted(CONFIGS) == FEATURES.names()


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_contract(kind: str) -> None:
    config = CONFIGS[kind]
    frame = contract_frame(200)
    feature = FEATURES.get(kind)(config)
    with pytest.raises(ModelError, match="before it was fitted"):
        feature.transform(frame[config.name])
    assert feature.fit(frame[config.name]) is feature
    encoded = feature.transform(frame[config.name])
    assert encoded.shape[0] == 200
    out = feature.encoder()(encoded)
    assert out.shape == (200, feature.output_dim)
    assert torch.isfinite(out).all()
    # State is plain JSON and restores a feature that transforms identically.
    state = json.loads(json.dumps(feature.state()))
    restored = FEATURES.get(kind).from_state(config, state)
    assert torch.equal(restored.transform(frame[config.name]), encoded)
    json.dumps(feature.profile(frame[config.name]))


@pytest.mark.parametrize("method,expected", [
    ("zscore", (np.array([1.0, 2.0, 3.0]) - 2.0) / np.std([1.0, 2.0, 3.0])),
    ("minmax", np.array([0.0, 0.5, 1.0])),
    ("robust", np.array([-1.0, 0.0, 1.0])),
    ("none", np.array([1.0, 2.0, 3.0])),
])
def test_number_normalizations(method: str, expected: np.ndarray) -> None:
    column = pd.Series([1.0, 2.0, 3.0])
    config = NumberFeatureConfig(name="v", normalization=method, encoding="scalar")  # type: ignore[arg-type]
    feature = NumberFeature(config).fit(column)
    np.testing.assert_allclose(feature.transform(column)[:, 0].numpy(), expected, rtol=1e-6)


def test_number_missing_strategies_and_indicator() -> None:
    column = pd.Series([1.0, None, 3.0, 100.0])
    for strategy, fill in [("mean", 104 / 3), ("median", 3.0), ("constant", -1.0)]:
        config = NumberFeatureConfig(name="v", normalization="none", encoding="scalar",
                                     missing=MissingConfig(strategy=strategy, value=-1.0, indicator=True))  # type: ignore[arg-type]
        encoded = NumberFeature(config).fit(column).transform(column)
        assert encoded[1, 0].item() == pytest.approx(fill, rel=1e-5)
        assert encoded[:, 1].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_number_outliers_clipped_with_bounds_from_training() -> None:
    column = pd.Series([1.0, 2.0, 3.0, 4.0, 1000.0])
    feature = NumberFeature(NumberFeatureConfig(name="v", normalization="none", encoding="scalar"),
                            cleaning=CleaningConfig(outliers=OutlierConfig(method="iqr", action="clip"))).fit(column)
    assert feature.transform(pd.Series([1000.0])).item() == pytest.approx(4.0 + 1.5 * 2.0)


def test_number_column_with_words_names_column_and_rows() -> None:
    feature = NumberFeature(NumberFeatureConfig(name="price"))
    with pytest.raises(DataError, match=r"column 'price' rows 1, 3.*not numbers.*'cheap'"):
        feature.fit(pd.Series(["1.5", "cheap", "2", "n/a?"]))


def test_category_unknown_bucket_and_min_frequency() -> None:
    column = pd.Series(["a"] * 5 + ["b"] * 5 + ["rare"])
    config = CategoryFeatureConfig(name="c", min_frequency=2)
    feature = FEATURES.get("category")(config).fit(column)
    codes = feature.transform(pd.Series(["a", "b", "rare", "never-seen", None]))
    assert codes.tolist() == [1, 2, 0, 0, 0]


def test_category_embedding_above_onehot_limit() -> None:
    column = pd.Series([f"v{i}" for i in range(200)])
    feature = FEATURES.get("category")(CategoryFeatureConfig(name="c")).fit(column)
    assert not feature.one_hot and feature.output_dim == feature.embedding_dim


def test_binary_positive_value_inference() -> None:
    feature = FEATURES.get("binary")(BinaryFeatureConfig(name="b")).fit(pd.Series(["No", "Yes", "No"]))
    assert feature.state()["positive"] == "Yes"
    # numbers from a request (1, 1.0, True-like) mean the same as in training
    numeric = FEATURES.get("binary")(BinaryFeatureConfig(name="b")).fit(pd.Series([0.0, 1.0, 1.0]))
    assert numeric.transform(pd.Series([1, 0])).reshape(-1).tolist() == [1.0, 0.0]


def test_binary_with_three_values_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="3 distinct values.*type: category"):
        FEATURES.get("binary")(BinaryFeatureConfig(name="b")).fit(pd.Series(["a", "b", "c"]))


def test_date_cyclical_parts() -> None:
    config = DateFeatureConfig(name="d", parts=["month"], cyclical=True)
    feature = FEATURES.get("date")(config).fit(pd.Series(["2021-12-31", "2022-01-01"]))
    encoded = feature.transform(pd.Series(["2021-12-31", "2022-01-01"]))
    # December and January sit next to each other on the circle
    assert torch.dist(encoded[0], encoded[1]).item() < 0.6


def test_date_column_with_words_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="not dates"):
        FEATURES.get("date")(DateFeatureConfig(name="d")).fit(pd.Series(["2020-01-01", "yesterday"]))


def test_number_piecewise_encoding() -> None:
    column = pd.Series(np.arange(100, dtype="float64"))
    config = NumberFeatureConfig(name="v", encoding="piecewise", bins=4, normalization="none")
    feature = NumberFeature(config).fit(column)
    values = pd.Series([0.0, 50.0, 99.0, 500.0])
    assert feature.transform(values).shape == (4, 1)  # the tensors hold the value; the encoder makes the bins
    encoded = feature.encoder()(feature.transform(values)).numpy()
    assert encoded.shape == (4, 4) and feature.output_dim == 4
    np.testing.assert_allclose(encoded[0], [0, 0, 0, 0], atol=1e-6)  # the lowest value: nothing filled
    np.testing.assert_allclose(encoded[2], [1, 1, 1, 1], atol=1e-6)  # the highest: every bin full
    assert 0 < encoded[1, 2] < 1 and encoded[1, 1] == 1 and encoded[1, 3] == 0  # inside the third bin
    assert encoded[3, 3] > 1  # beyond the training range the last bin extends linearly


PROBE_COLUMNS = {  # a plain one, and two whose spread a few huge values inflate (float32 would merge values)
    "normal": np.random.default_rng(0).normal(size=2000),
    "heavy tail": np.random.default_rng(0).lognormal(sigma=7, size=2000),
    "a sentinel": np.concatenate([np.tile(np.arange(100.0), 20), [1e12]]),
}


@pytest.mark.parametrize("indicator", [False, True])
@pytest.mark.parametrize("name", sorted(PROBE_COLUMNS))
def test_a_bundle_from_before_still_encodes_the_bins_in_transform_and_both_agree(name: str, indicator: bool) -> None:
    """A fitted state without ``piecewise_in_encoder`` (saved before the encoding moved into the
    model) gives the bins from transform, as its weights and any exported ONNX graph expect; the
    model-side encoding gives the same values, on every bin edge too."""
    values = PROBE_COLUMNS[name]
    config = NumberFeatureConfig(name="v", bins=16, missing={"indicator": indicator})
    feature = NumberFeature(config).fit(pd.Series(np.concatenate([values, [np.nan] * 20])))
    before = NumberFeature.from_state(config, {k: v for k, v in feature.state().items() if k != "piecewise_in_encoder"})
    edges = np.asarray(feature.edges_) * feature.scale_ + feature.center_  # the edges, unscaled (zscore)
    probe = pd.Series(np.concatenate([values[:500], edges, [0.0, 1e308, -1e308, np.nan]]))
    old = before.transform(probe)
    assert old.shape == (len(probe), 16 + indicator) and isinstance(before.encoder(), Standardize)
    assert feature.transform(probe).shape == (len(probe), 1 + indicator)
    new = feature.encoder()(feature.transform(probe))
    assert new.shape == old.shape
    inside = old.abs() <= 1  # beyond the training range values reach 1e4 / a bin's width: compare relatively there
    torch.testing.assert_close(new[inside], old[inside], atol=2e-6, rtol=0)
    torch.testing.assert_close(new[~inside], old[~inside], rtol=1e-5, atol=0)


def test_a_saved_state_keeps_the_encoding_in_the_model_and_a_scalar_one_says_it_has_none() -> None:
    column = pd.Series(np.random.default_rng(1).normal(size=500))
    piecewise = NumberFeatureConfig(name="v", bins=8)
    loaded = NumberFeature.from_state(piecewise, json.loads(json.dumps(NumberFeature(piecewise).fit(column).state())))
    assert isinstance(loaded.encoder(), PiecewiseLinear) and loaded.transform(column).shape == (500, 1)
    assert loaded.encoder()(loaded.transform(column)).shape == (500, loaded.output_dim) == (500, 8)
    scalar = NumberFeatureConfig(name="v", encoding="scalar")
    assert NumberFeature(scalar).fit(column).state()["piecewise_in_encoder"] is False
