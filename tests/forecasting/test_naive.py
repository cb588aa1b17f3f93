"""seasonal_naive: the last season repeated, with the FPP3 §5.5 interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelmill.config import ForecastConfig, parse_task_config
from modelmill.errors import ModelError
from modelmill.forecasting.base import FitContext, ForecasterState, build_forecaster
from modelmill.forecasting.naive import SeasonalNaive, normal_quantile
from modelmill.forecasting.panel import Panel, read_panel

PATTERN = [10.0, 30.0, 20.0, 50.0]  # one quarterly season


def config(horizon: int = 6, **model: object) -> ForecastConfig:
    raw = {"task": "forecast", "name": "t", "data": {"source": "x.csv"},
           "series": {"time": "when", "target": "sales", "id": "store", "horizon": horizon},
           "model": {"type": "seasonal_naive", **model}}
    parsed = parse_task_config(raw)
    assert isinstance(parsed, ForecastConfig)
    return parsed


def quarterly(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [pd.DataFrame({"store": key, "when": pd.date_range("2015-01-01", periods=len(v), freq="QS"),
                          "sales": v}) for key, v in values.items()]
    return pd.concat(rows, ignore_index=True)


def fitted(values: dict[str, list[float]], horizon: int = 6) -> tuple[SeasonalNaive, Panel]:
    cfg = config(horizon)
    panel, _ = read_panel(quarterly(values), cfg, source="t.csv")
    forecaster = build_forecaster(cfg).fit(panel, FitContext())
    assert isinstance(forecaster, SeasonalNaive)
    return forecaster, panel


def test_the_forecast_frame_follows_the_contract() -> None:
    rng = np.random.default_rng(0)
    forecaster, panel = fitted({"a": list(rng.normal(size=12)), "b": list(rng.normal(size=16))})
    out = forecaster.forecast(panel, pd.DataFrame())
    assert list(out.columns) == ["unique_id", "ds", "forecast", "lower", "upper"]
    assert out.groupby("unique_id").size().to_dict() == {"a": 6, "b": 6}
    b = out[out["unique_id"] == "b"]
    assert b["ds"].iloc[0] == pd.Timestamp("2019-01-01") and b["ds"].iloc[-1] == pd.Timestamp("2020-04-01")
    assert ((out["lower"] <= out["forecast"]) & (out["forecast"] <= out["upper"])).all()


def test_a_purely_seasonal_series_is_forecast_exactly() -> None:
    forecaster, panel = fitted({"a": PATTERN * 5})
    out = forecaster.forecast(panel, pd.DataFrame())
    assert out["forecast"].tolist() == (PATTERN * 2)[:6]
    assert (out["lower"] == out["forecast"]).all() and (out["upper"] == out["forecast"]).all()  # no residual


def test_the_interval_widens_by_the_square_root_of_seasons_back() -> None:
    rng = np.random.default_rng(1)
    values = list(np.tile(PATTERN, 8) + rng.normal(scale=2.0, size=32))
    forecaster, panel = fitted({"a": values}, horizon=9)
    out = forecaster.forecast(panel, pd.DataFrame())
    residuals = np.array(values[4:]) - np.array(values[:-4])
    half = (out["upper"] - out["forecast"]).to_numpy()
    sigma = np.sqrt(np.mean(residuals ** 2))
    np.testing.assert_allclose(half[:4], normal_quantile(0.8) * sigma)
    np.testing.assert_allclose(half[4:8], normal_quantile(0.8) * sigma * np.sqrt(2))  # k = 1
    np.testing.assert_allclose(half[8], normal_quantile(0.8) * sigma * np.sqrt(3))  # k = 2
    assert normal_quantile(0.8) == pytest.approx(1.2816, abs=1e-4)


def test_a_series_shorter_than_a_season_repeats_its_last_value_and_says_so() -> None:
    forecaster, panel = fitted({"long": PATTERN * 3, "short": [1.0, 2.0, 4.0]}, horizon=2)
    out = forecaster.forecast(panel, pd.DataFrame())
    assert out[out["unique_id"] == "short"]["forecast"].tolist() == [4.0, 4.0]
    assert forecaster.describe()["naive_instead"]["series"] == ["short"]


def test_state_round_trip_gives_identical_forecasts() -> None:
    rng = np.random.default_rng(2)
    forecaster, panel = fitted({"a": list(rng.normal(size=20)), "b": list(rng.normal(size=13))})
    again = SeasonalNaive.from_state(config(), ForecasterState(json=forecaster.state().json))
    pd.testing.assert_frame_equal(again.forecast(panel, pd.DataFrame()), forecaster.forecast(panel, pd.DataFrame()))


def test_unfitted_and_malformed_states_are_clear_errors() -> None:
    with pytest.raises(ModelError, match="not fitted yet. Fix: call fit"):
        SeasonalNaive(config()).state()
    with pytest.raises(ModelError, match="seasonal_naive state is malformed.*Fix: refit"):
        SeasonalNaive.from_state(config(), ForecasterState(json={"season": 4}))
