"""The gbdt forecaster: the forecast contract, better than naive on a seasonal series with a
known-future driver, identical forecasts after its state's round trip, and clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from modelmill.config.forecast import LagGBDTConfig
from modelmill.errors import ConfigError, DataError, ModelError
from modelmill.forecasting.base import FORECASTERS, FitContext, ForecasterState
from modelmill.forecasting.gbdt import LagGBDT, conformal_bounds
from modelmill.forecasting.panel import Panel, horizon_frame, read_panel
from tests.forecasting.test_windows import HORIZON, shop_config, shops

GBDT = {"type": "gbdt", "trees": 200, "early_stopping_rounds": 20}


def split(steps: int = 160, seed: int = 0) -> tuple[Panel, Panel, pd.DataFrame]:
    """The whole panel, its history before the last horizon, and the future rows of that horizon."""
    panel, _ = read_panel(shops(steps, seed=seed), shop_config(GBDT), source="shops.csv")
    history = panel.up_to(panel.frame["ds"].max() - pd.Timedelta(days=HORIZON))
    return panel, history, horizon_frame(history, panel.frame, HORIZON, source="t")


def fitted(history: Panel) -> LagGBDT:
    return LagGBDT(shop_config(GBDT)).fit(history, FitContext(seed=0))


def test_forecasts_follow_the_contract() -> None:
    _, history, future = split()
    forecast = fitted(history).forecast(history, future)
    assert list(forecast.columns) == ["unique_id", "ds", "forecast", "lower", "upper"]
    assert len(forecast) == 2 * HORIZON and forecast.groupby("unique_id").size().to_dict() == {"a": 6, "b": 6}
    for key, rows in forecast.groupby("unique_id"):
        last = history.frame.loc[history.frame["unique_id"] == key, "ds"].max()
        assert list(rows["ds"]) == list(pd.date_range(last, periods=HORIZON + 1, freq="D")[1:])
    assert (forecast["lower"] <= forecast["forecast"]).all() and (forecast["forecast"] <= forecast["upper"]).all()
    assert forecast[["forecast", "lower", "upper"]].notna().all().all()


def test_beats_the_seasonal_naive_forecast_of_a_seasonal_series_with_a_driver() -> None:
    panel, history, future = split(steps=200)
    forecast = fitted(history).forecast(history, future)
    actual = panel.frame.set_index(["unique_id", "ds"])["y"]
    truth = actual.reindex(pd.MultiIndex.from_frame(forecast[["unique_id", "ds"]])).to_numpy()
    naive = actual.reindex(pd.MultiIndex.from_arrays([forecast["unique_id"], forecast["ds"] - pd.Timedelta(days=7)]))
    scale = forecast["unique_id"].map({"a": 100.0, "b": 5.0}).to_numpy()  # errors relative to each level
    ours = np.mean(np.abs(forecast["forecast"].to_numpy() - truth) / scale)
    theirs = np.mean(np.abs(naive.to_numpy() - truth) / scale)
    assert ours < 0.7 * theirs


def test_the_state_round_trip_gives_identical_forecasts() -> None:
    _, history, future = split()
    model = fitted(history)
    state = model.state()
    assert set(state.files) == {"trees.txt"} and state.files["trees.txt"].startswith(b"tree\n")
    copy = ForecasterState(json=dict(state.json), files={k: bytes(v) for k, v in state.files.items()})
    loaded = LagGBDT.from_state(shop_config(GBDT), copy)
    pd.testing.assert_frame_equal(loaded.forecast(history, future), model.forecast(history, future),
                                  check_exact=True)
    assert loaded.needed_history() == model.needed_history() > 1


def test_it_is_registered_with_its_config() -> None:
    assert FORECASTERS.get("gbdt") is LagGBDT and FORECASTERS.config_class("gbdt") is LagGBDTConfig


def test_missing_lightgbm_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _, history, _ = split()
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm now raises ImportError
    with pytest.raises(ModelError, match=r"needs LightGBM.*Fix: pip install 'modelmill\[trees\]'"):
        LagGBDT(shop_config(GBDT)).fit(history, FitContext())


def test_missing_future_covariates_are_named() -> None:
    _, history, future = split()
    model = fitted(history)
    future.loc[3, "promo"] = np.nan
    with pytest.raises(DataError, match=r"column 'promo'.*no value at 1 of the 12 forecast steps \(series 'a'"):
        model.forecast(history, future)


def test_a_monotone_constraint_must_name_a_covariate() -> None:
    _, history, _ = split()
    with pytest.raises(ConfigError, match=r"model.monotone.price: 'price' is no covariate.*promo, size"):
        LagGBDT(shop_config({**GBDT, "monotone": {"price": 1}})).fit(history, FitContext())


def test_conformal_bounds_cover_the_held_out_errors_at_the_interval() -> None:
    rng = np.random.default_rng(0)
    errors = rng.normal(0, np.repeat([1.0, 3.0], 500))
    bounds = conformal_bounds(errors, np.repeat([1, 2], 500).astype(float), 2, 0.8)
    np.testing.assert_allclose(bounds, [[-1.28, 1.28], [-3.84, 3.84]], atol=0.35)
