"""Window features: nothing from after an origin reaches its rows, the same features at training
and at forecast time, auto defaults from the season, and clear errors for missing covariates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.config import ForecastConfig, parse_task_config
from modelmill.errors import DataError
from modelmill.forecasting.panel import Panel, horizon_frame, read_panel
from modelmill.forecasting.windows import build_windows, resolve_spec, training_origins

HORIZON = 6


def shops(steps: int = 120, *, seed: int = 0, frequency: str = "D") -> pd.DataFrame:
    """Two daily series with a weekly season, a known-future promotion and a static size."""
    rng = np.random.default_rng(seed)
    parts = []
    for shop, level in (("a", 100.0), ("b", 5.0)):
        t = np.arange(steps)
        promo = rng.integers(0, 2, steps).astype(float)
        sales = level * (1 + 0.3 * np.sin(2 * np.pi * t / 7) + 0.2 * promo) + rng.normal(0, level * 0.05, steps)
        parts.append(pd.DataFrame({"shop": shop, "day": pd.date_range("2021-01-04", periods=steps, freq=frequency),
                                   "sales": sales, "promo": promo, "size": level}))
    return pd.concat(parts, ignore_index=True)


def shop_config(model: dict[str, Any] | None = None, **extra: Any) -> ForecastConfig:
    raw: dict[str, Any] = {"task": "forecast", "name": "t", "data": {"source": "x.csv"},
                           "series": {"time": "day", "target": "sales", "id": "shop", "horizon": HORIZON,
                                      "future": ["promo"], "static": ["size"]},
                           "model": model or {"type": "seasonal_naive"},
                           "training": {"progress": False, "threads": 1}, **extra}
    parsed = parse_task_config(raw)
    assert isinstance(parsed, ForecastConfig)
    return parsed


def shop_panel(frame: pd.DataFrame | None = None) -> Panel:
    panel, _ = read_panel(shops() if frame is None else frame, shop_config(), source="shops.csv")
    return panel


def test_no_value_after_an_origin_reaches_its_rows() -> None:
    panel, origin = shop_panel(), 60
    spec = resolve_spec(shop_config(), panel)
    before = build_windows(panel, spec, {"a": np.array([origin])})
    rows = before.matrix()  # (horizon, columns): one row per forecast step
    rng = np.random.default_rng(1)
    for h in range(1, HORIZON + 1):
        frame = panel.frame.copy()
        later = (frame["unique_id"] == "a") & (frame.index > origin)
        frame.loc[later, "y"] = rng.normal(1000, 500, int(later.sum()))
        # every future covariate after the origin changes too, except at this row's own step
        other = later & (frame.index != origin + h)
        frame.loc[other, "promo"] = rng.normal(7, 3, int(other.sum()))
        after = build_windows(panel.with_frame(frame), spec, {"a": np.array([origin])})
        np.testing.assert_array_equal(after.matrix()[h - 1], rows[h - 1])
        np.testing.assert_array_equal(after.past, before.past)
        assert after.target[0, h - 1] != before.target[0, h - 1]  # the target did change: it was never an input


def test_the_target_of_a_row_is_never_among_its_inputs() -> None:
    panel = shop_panel()
    spec = resolve_spec(shop_config(), panel)
    origins = training_origins(panel, spec, max_origins=10_000, seed=0)
    x, y = build_windows(panel, spec, origins.refit).rows()
    assert len(y) > 500
    assert not np.isclose(x, y[:, None], rtol=0, atol=1e-12).any(axis=1).any()


def test_training_windows_equal_the_forecast_windows_of_the_history_cut_there() -> None:
    panel, origin = shop_panel(), 70
    spec = resolve_spec(shop_config(), panel)
    trained = build_windows(panel, spec, {"a": np.array([origin]), "b": np.array([origin])})
    history = panel.up_to(panel.frame["ds"].iloc[origin])
    forecast = build_windows(history, spec, None, horizon_frame(history, panel.frame, HORIZON, source="t"))
    np.testing.assert_allclose(forecast.matrix(), trained.matrix(), rtol=1e-12)
    assert np.isnan(forecast.target).all()


def test_windows_are_scaled_so_the_level_of_a_series_does_not_matter() -> None:
    frame = shops()
    big = frame.assign(sales=frame["sales"] * 1000)
    spec = resolve_spec(shop_config(), shop_panel(frame))
    small_w = build_windows(shop_panel(frame), spec, {"a": np.arange(30, 100)})
    big_w = build_windows(shop_panel(big), spec, {"a": np.arange(30, 100)})
    log_scale = spec.origin_names().index("log_scale")
    np.testing.assert_allclose(big_w.target, small_w.target, rtol=1e-9)
    np.testing.assert_allclose(np.delete(big_w.origin, log_scale, 1), np.delete(small_w.origin, log_scale, 1),
                               rtol=1e-9)
    np.testing.assert_allclose(big_w.origin[:, log_scale] - small_w.origin[:, log_scale], np.log(1000))


@pytest.mark.parametrize("frequency,lags,windows,calendar", [
    ("D", 11, (7, 28), ("week", "year")),
    ("h", 36, (24, 96), ("day", "week", "year")),
    ("QS-JAN", 6, (6, 16), ("year",)),
    ("YS", 2, (6,), ()),
])
def test_auto_features_follow_the_frequency(frequency: str, lags: int, windows: tuple[int, ...],
                                            calendar: tuple[str, ...]) -> None:
    panel = shop_panel(shops(frequency=frequency))
    spec = resolve_spec(shop_config(), panel)
    assert spec.lags == tuple(range(1, lags + 1)) and spec.windows == windows and spec.calendar == calendar


def test_the_latest_origins_are_held_out_and_training_targets_end_before_them() -> None:
    panel = shop_panel()
    spec = resolve_spec(shop_config(), panel)
    origins = training_origins(panel, spec, max_origins=10_000, seed=0)
    for key in ("a", "b"):
        first = origins.train_until[key]
        assert origins.valid[key].min() == first and origins.valid[key].max() == 120 - 1 - HORIZON
        assert origins.train[key].max() < first
    trained = build_windows(panel, spec, origins.train).until(origins.train_until)
    ahead = trained.positions[:, None] + np.arange(1, HORIZON + 1)
    assert np.isnan(trained.target[ahead > origins.train_until["a"]]).all()
    capped = training_origins(panel, spec, max_origins=40, seed=0)
    assert sum(len(v) for v in capped.train.values()) == 40


def test_a_missing_future_covariate_names_the_column_series_and_steps() -> None:
    panel = shop_panel()
    spec = resolve_spec(shop_config(), panel)
    steps = pd.DataFrame({"unique_id": ["a"] * HORIZON + ["b"] * HORIZON,
                          "ds": list(pd.date_range(panel.frame["ds"].max(), periods=HORIZON + 1, freq="D")[1:]) * 2,
                          "promo": [1.0] * (2 * HORIZON)})
    steps.loc[8, "promo"] = np.nan
    with pytest.raises(DataError, match=r"column 'promo'.*no value at 1 of the 12 forecast steps \(series 'b' at "
                                        r"2021-05-06.*Fix:"):
        build_windows(panel, spec, None, steps)
    with pytest.raises(DataError, match=r"column 'promo'.*no value at 12 of the 12 forecast steps"):
        build_windows(panel, spec, None, None)
    with pytest.raises(DataError, match=r"column 'promo'.*not given for the forecast steps"):
        build_windows(panel, spec, None, steps.drop(columns="promo"))
