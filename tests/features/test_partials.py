"""Fitting from merged partial statistics of shards (``features.partials``) gives the state
``fit`` gives on the whole column: exactly for counts, vocabularies, fills, bounds, edges
and quantiles of exact sketches; means and spreads to float rounding (sums in another
order); quantiles of a compressed sketch within its rank tolerance. No Ray here."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.config.schema import (BinaryFeatureConfig, CategoryFeatureConfig, CleaningConfig, DateFeatureConfig,
                                     MissingConfig, NumberFeatureConfig, OutlierConfig, TextFeatureConfig)
from modelmill.errors import DataError, ModelError
from modelmill.features import FEATURES, Feature
from modelmill.features.partials import Counts, Moments, Sketch, merge_all, rank_tolerance

ROWS = 3_000
MOMENTS = 1e-12  # relative: a sum in another order


def shards(column: pd.Series, cuts: list[int]) -> list[tuple[pd.Series, np.ndarray]]:
    """The column cut at ``cuts``, each piece with its rows' positions."""
    bounds = [0, *cuts, len(column)]
    return [(column.iloc[a:b].reset_index(drop=True), np.arange(a, b)) for a, b in zip(bounds, bounds[1:])]


def fitted_both(feature_type: str, config: Any, column: pd.Series, cuts: list[int],
                cleaning: CleaningConfig | None = None) -> tuple[Feature[Any], Feature[Any]]:
    whole = FEATURES.get(feature_type)(config, cleaning=cleaning).fit(column)
    sharded = FEATURES.get(feature_type)(config, cleaning=cleaning)
    partials = [sharded.partial(piece, rows) for piece, rows in shards(column, cuts)]
    return whole, sharded.fit_from(merge_all(partials))


def assert_same_state(whole: Feature[Any], sharded: Feature[Any], approximate: tuple[str, ...] = ()) -> None:
    a, b = whole.state(), sharded.state()
    assert a.keys() == b.keys()
    for key in a:
        if key in approximate:
            assert b[key] == pytest.approx(a[key], rel=MOMENTS, abs=1e-15), key
        else:
            assert b[key] == a[key], key


def numbers(seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    values = np.round(rng.lognormal(3, 1, ROWS), 1)
    values[rng.random(ROWS) < 0.1] = np.nan
    values[:50] = 0.0  # a point mass
    return pd.Series(values)


CUTS = [[], [1], [700, 701, 2_000], [500, 1_000, 1_500, 2_999]]


@pytest.mark.parametrize("cuts", CUTS, ids=str)
@pytest.mark.parametrize("normalization", ["zscore", "minmax", "robust", "log1p", "none"])
@pytest.mark.parametrize("strategy", ["auto", "mean", "mode", "constant"])
def test_a_number_fitted_from_shards_is_fitted_as_a_whole(cuts: list[int], normalization: str, strategy: str) -> None:
    missing = MissingConfig(strategy=strategy, value=1.5 if strategy == "constant" else None)  # type: ignore[arg-type]
    config = NumberFeatureConfig(name="x", normalization=normalization, missing=missing)  # type: ignore[arg-type]
    whole, sharded = fitted_both("number", config, numbers(len(cuts)), cuts)
    # edges are of values scaled by the center and scale, so they carry their rounding
    summed = ("center", "scale", "edges") if normalization in ("zscore", "log1p") else ()
    assert_same_state(whole, sharded, approximate=summed + (("fill", "center", "scale", "edges")
                                                            if strategy == "mean" else ()))
    if normalization in ("robust", "minmax", "none") and strategy != "mean":  # no sums: bit for bit
        assert sharded.state() == whole.state()


@pytest.mark.parametrize("method", ["iqr", "zscore"])
def test_clipped_outliers_match_as_a_whole(method: str) -> None:
    cleaning = CleaningConfig(outliers=OutlierConfig(method=method, action="clip"))  # type: ignore[arg-type]
    config = NumberFeatureConfig(name="x", normalization="robust")
    whole, sharded = fitted_both("number", config, numbers(7), [900, 2_100], cleaning)
    if method == "iqr":
        assert sharded.state() == whole.state()
    else:  # bounds from a mean and a spread
        assert sharded.state()["clip"] == pytest.approx(whole.state()["clip"], rel=MOMENTS)
    assert sharded.report().entries == whole.report().entries


def test_infinities_and_an_empty_shard_fit_as_the_whole_column() -> None:
    """+inf and -inf are read as missing by both fits (inf - inf once made the whole fit's mean
    nan): the sharded fit says the same, finite; an empty shard (two equal cuts) changes nothing."""
    column = numbers(5)
    column.iloc[[10, 20]] = [np.inf, -np.inf]
    config = NumberFeatureConfig(name="x", normalization="zscore")
    whole, sharded = fitted_both("number", config, column, [700, 700, 2_000])
    a, b = whole.state(), sharded.state()
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(np.asarray(a[key], dtype=object).astype(str), np.asarray(b[key], dtype=object).astype(str)), key
    assert np.isfinite([a["center"], a["scale"], a["fill"]]).all()


def test_transform_after_a_sharded_fit_equals_the_whole_fit() -> None:
    column = numbers(3)
    config = NumberFeatureConfig(name="x", normalization="robust", missing=MissingConfig(indicator=True))
    whole, sharded = fitted_both("number", config, column, [1_000, 2_000])
    assert np.array_equal(whole.transform(column).numpy(), sharded.transform(column).numpy())


def categories(seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    words = np.array(["red", "green", "blue", "teal", "plum", "gold", "?", " red "], dtype=object)
    values = words[rng.integers(0, len(words), ROWS)]
    values[rng.random(ROWS) < 0.05] = None
    return pd.Series(values)


@pytest.mark.parametrize("cuts", CUTS, ids=str)
@pytest.mark.parametrize("settings", [{}, {"min_frequency": 380}, {"max_size": 2}, {"missing": {"strategy": "mode"}}],
                         ids=str)
def test_a_category_fitted_from_shards_is_fitted_as_a_whole(cuts: list[int], settings: dict[str, Any]) -> None:
    config = CategoryFeatureConfig(name="c", **settings)
    whole, sharded = fitted_both("category", config, categories(len(cuts)), cuts)
    assert sharded.state() == whole.state()


def test_ties_between_equal_counts_break_by_first_occurrence_across_shards() -> None:
    # b and a tie at 3; b comes first (in the second shard), so value_counts ranks it first
    column = pd.Series(["c", "c", "c", "c", "b", "a", "b", "a", "b", "a"])
    config = CategoryFeatureConfig(name="c", max_size=2, missing=MissingConfig(strategy="mode"))
    whole, sharded = fitted_both("category", config, column, [4, 6])
    assert whole.state() == sharded.state() == {"vocabulary": ["b", "c"], "fill": "c"}
    tie = pd.Series(["z", "y", "y", "z", "x"])
    whole, sharded = fitted_both("category", config, tie, [1, 3])
    assert sharded.state() == whole.state() == {"vocabulary": ["y", "z"], "fill": "z"}


@pytest.mark.parametrize("values", [
    ["yes", "no", "no", None, "yes", "no"],
    [1.0, 0.0, np.nan, 1.0, 1.0, 0.0],
    [0.5, 1.0, 1.0, np.nan, 0.5, 1.0],  # not whole: "1.0", which a shard of only 1.0 cannot know
    [True, False, False, True, True, False],
], ids=["strings", "whole numbers", "fractions", "booleans"])
def test_a_binary_fitted_from_shards_is_fitted_as_a_whole(values: list[Any]) -> None:
    column = pd.Series(values * 50)
    for cuts in ([], [1], [2, 3, 100]):
        whole, sharded = fitted_both("binary", BinaryFeatureConfig(name="b"), column, cuts)
        assert sharded.state() == whole.state()


def test_a_date_fitted_from_shards_is_fitted_as_a_whole() -> None:
    rng = np.random.default_rng(5)
    days = pd.to_datetime("2001-01-01") + pd.to_timedelta(rng.integers(0, 9_000, ROWS), unit="D")
    column = pd.Series(days.strftime("%Y-%m-%d %H:%M"), dtype=object)
    column[rng.random(ROWS) < 0.1] = None
    whole, sharded = fitted_both("date", DateFeatureConfig(name="d"), column, [10, 1_500])
    assert_same_state(whole, sharded, approximate=("year_center", "year_scale"))


def test_a_sharded_fit_refuses_what_the_whole_fit_refuses() -> None:
    column = pd.Series([np.nan] * 10)
    with pytest.raises(DataError, match="'x': has no values in the training split"):
        fitted_both("number", NumberFeatureConfig(name="x"), column, [5])
    with pytest.raises(DataError, match="has a single value"):
        fitted_both("binary", BinaryFeatureConfig(name="b"), pd.Series(["y"] * 6), [3])
    with pytest.raises(DataError, match="no value frequent enough"):
        fitted_both("category", CategoryFeatureConfig(name="c", min_frequency=4), pd.Series(list("aabbcc")), [2])


def test_a_text_feature_says_it_cannot_be_fitted_from_shards() -> None:
    feature = FEATURES.get("text")(TextFeatureConfig(name="review"))
    with pytest.raises(ModelError, match=r"'review' \(text\) cannot be fitted from shards.*Fix: fit this pipeline "
                                         r"on one machine"):
        feature.partial(pd.Series(["a text"]), np.arange(1))


def test_partials_of_another_feature_are_refused() -> None:
    partial = FEATURES.get("category")(CategoryFeatureConfig(name="c")).partial(pd.Series(["a"]), np.arange(1))
    with pytest.raises(ModelError, match="'x' is fitted from a NumberPartial, not a CategoryPartial"):
        FEATURES.get("number")(NumberFeatureConfig(name="x")).fit_from(partial)


# ------------------------------------------------------------------ the pieces


def test_sketch_quantiles_and_medians_are_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    levels = np.r_[np.linspace(0, 1, 17), 0.1, 0.9]
    for size in (1, 2, 3, 10, 599, 600, 1_001):
        for values in (rng.normal(size=size), rng.integers(0, 5, size).astype(float)):
            sketch = merge_all([Sketch.of(piece) for piece in np.array_split(values, 3)])
            assert np.array_equal(sketch.quantile(levels), np.quantile(values, levels))
            assert sketch.median() == np.median(values)
            assert sketch.values[0] == values.min() and sketch.values[-1] == values.max()


def test_a_compressed_sketch_is_within_its_rank_tolerance() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(size=40_000), np.zeros(4_000)])  # continuous, and a point mass
    pieces = np.array_split(rng.permutation(values), 16)
    size = 500
    sketch = merge_all([Sketch.of(piece, cap=1_000, size=size) for piece in pieces])
    assert not sketch.exact and sketch.values.size <= 4 * size
    assert sketch.values[0] == values.min() and sketch.values[-1] == values.max()
    ordered = np.sort(values)
    tolerance = rank_tolerance(len(pieces)) * 20_000 / size  # the bound at this size
    for q in np.linspace(0, 1, 41):
        got = sketch.quantile([q])[0]
        rank_low = np.searchsorted(ordered, got, side="left") / len(values)
        rank_high = np.searchsorted(ordered, got, side="right") / len(values)
        assert rank_low - tolerance <= q <= rank_high + tolerance, q
    assert sketch.mode() == 0.0  # the point mass stays exact


def test_moments_merge_in_any_order() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(1e6, 3, 10_000)
    merged = merge_all([Moments.of(piece) for piece in np.array_split(values, 7)])
    assert merged.n == values.size
    assert merged.mean == pytest.approx(values.mean(), rel=MOMENTS)
    assert merged.std == pytest.approx(values.std(), rel=1e-9)


def test_counts_rank_as_value_counts() -> None:
    values = ["b", "a", None, "c", "a", "b", "d"]
    halves = Counts.of(values[:3], np.arange(3)).merge(Counts.of(values[3:], np.arange(3, 7)))
    expected = pd.Series(values, dtype="string").value_counts()
    assert halves.ranked() == [(str(k), int(v)) for k, v in expected.items()]
    assert halves.in_order() == ["b", "a", "c", "d"] and halves.total == 6


# ------------------------------------------------------------------ targets


@pytest.mark.parametrize("weights", ["none", "balanced", {"yes": 2.0}], ids=str)
def test_a_binary_target_fitted_from_shards_is_fitted_as_a_whole(weights: Any) -> None:
    from modelmill.config.targets import BinaryTargetConfig
    from modelmill.features import TARGETS

    column = pd.Series((["no", "yes", "no", None, "no"] * 40))
    config = BinaryTargetConfig(name="y", class_weights=weights)
    whole = TARGETS.get("binary")(config).fit(column)
    sharded = TARGETS.get("binary")(config)
    sharded.fit_from(merge_all([sharded.partial(piece, rows) for piece, rows in shards(column, [3, 77])]))
    assert sharded.state() == whole.state()


@pytest.mark.parametrize("weights", ["none", "balanced"])
def test_a_category_target_fitted_from_shards_is_fitted_as_a_whole(weights: str) -> None:
    from modelmill.config.targets import CategoryTargetConfig
    from modelmill.features import TARGETS

    column = categories(9)
    config = CategoryTargetConfig(name="y", class_weights=weights)  # type: ignore[arg-type]
    whole = TARGETS.get("category")(config).fit(column)
    sharded = TARGETS.get("category")(config)
    sharded.fit_from(merge_all([sharded.partial(piece, rows) for piece, rows in shards(column, [1_000, 1_001])]))
    assert sharded.state() == whole.state()
    single = pd.Series(["a"] * 5)
    with pytest.raises(DataError, match="the target has a single class"):
        sharded.fit_from(sharded.partial(single, np.arange(5)))


def test_a_number_target_fitted_from_shards_is_fitted_as_a_whole() -> None:
    from modelmill.config.targets import NumberTargetConfig
    from modelmill.features import TARGETS

    column = numbers(11)
    config = NumberTargetConfig(name="y")
    whole = TARGETS.get("number")(config).fit(column)
    sharded = TARGETS.get("number")(config)
    sharded.fit_from(merge_all([sharded.partial(piece, rows) for piece, rows in shards(column, [5, 2_500])]))
    assert sharded.state() == pytest.approx(whole.state(), rel=MOMENTS)
    with pytest.raises(DataError, match="fewer than 2 distinct values"):
        sharded.fit_from(sharded.partial(pd.Series([1.0, 1.0, np.nan]), np.arange(3)))
