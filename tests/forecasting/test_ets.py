"""ets: statsmodels' state-space ETS per series, the form chosen by AICc, the state as JSON."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from modelmill.config import ForecastConfig, parse_task_config
from modelmill.errors import DataError, ModelError
from modelmill.forecasting.base import FitContext, ForecasterState, build_forecaster
from modelmill.forecasting.ets import ETS
from modelmill.forecasting.naive import normal_quantile
from modelmill.forecasting.panel import Panel, read_panel

pytest.importorskip("statsmodels")


def config(horizon: int = 4, model: dict[str, object] | None = None) -> ForecastConfig:
    raw = {"task": "forecast", "name": "t", "data": {"source": "x.csv"},
           "series": {"time": "when", "target": "sales", "id": "store", "horizon": horizon},
           "model": {"type": "ets", **(model or {})}}
    parsed = parse_task_config(raw)
    assert isinstance(parsed, ForecastConfig)
    return parsed


def panel_of(values: dict[str, np.ndarray], cfg: ForecastConfig, frequency: str = "QS") -> Panel:
    rows = [pd.DataFrame({"store": key, "when": pd.date_range("2010-01-01", periods=len(v), freq=frequency),
                          "sales": v}) for key, v in values.items()]
    panel, _ = read_panel(pd.concat(rows, ignore_index=True), cfg, source="t.csv")
    return panel


def seasonal(steps: int, seed: int, level: float = 100.0) -> np.ndarray:
    """Trend, a quarterly season and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    values: np.ndarray = level + 0.8 * t + np.tile([6.0, -4.0, 9.0, -11.0], steps // 4 + 1)[:steps] + \
        rng.normal(scale=1.0, size=steps)
    return values


def fitted(values: dict[str, np.ndarray], **model: object) -> tuple[ETS, Panel]:
    cfg = config(model=model)
    panel = panel_of(values, cfg)
    forecaster = build_forecaster(cfg).fit(panel, FitContext())
    assert isinstance(forecaster, ETS)
    return forecaster, panel


def test_a_trending_seasonal_series_gets_a_seasonal_form_and_close_forecasts() -> None:
    values = seasonal(44, seed=0)
    forecaster, panel = fitted({"a": values[:40], "b": seasonal(36, seed=1, level=50.0)}, trend="additive")
    out = forecaster.forecast(panel, pd.DataFrame())
    assert list(out.columns) == ["unique_id", "ds", "forecast", "lower", "upper"]
    assert out.groupby("unique_id").size().to_dict() == {"a": 4, "b": 4}
    a = out[out["unique_id"] == "a"]
    assert a["ds"].tolist() == list(pd.date_range("2020-01-01", periods=4, freq="QS"))
    assert np.abs(a["forecast"].to_numpy() - values[40:]).max() < 5  # the noise is 1, the season ±11
    assert ((out["lower"] < out["forecast"]) & (out["forecast"] < out["upper"])).all()
    assert forecaster.describe()["series"]["a"]["form"].endswith("A)[4]") or "M)[4]" in \
        forecaster.describe()["series"]["a"]["form"]


def test_state_round_trip_through_json_gives_identical_forecasts() -> None:
    forecaster, panel = fitted({"a": seasonal(40, seed=2), "b": seasonal(32, seed=3, level=20.0)},
                               trend="damped", seasonal="additive")
    text = json.dumps(forecaster.state().json)
    again = ETS.from_state(config(), ForecasterState(json=json.loads(text)))
    pd.testing.assert_frame_equal(again.forecast(panel, pd.DataFrame()), forecaster.forecast(panel, pd.DataFrame()))


def test_another_history_reuses_the_fitted_parameters_without_refitting(monkeypatch: pytest.MonkeyPatch) -> None:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    forecaster, panel = fitted({"a": seasonal(60, seed=4)}, trend="damped", seasonal="additive")

    def no_refit(*args: object, **kwargs: object) -> None:
        raise AssertionError("a forecast must not re-optimise")

    monkeypatch.setattr(ETSModel, "fit", no_refit)
    recent = panel.tail(30)  # the service's recent history: another window than the fitted one
    out = forecaster.forecast(recent, pd.DataFrame())
    assert len(out) == 4 and out["forecast"].notna().all()
    with pytest.raises(DataError, match="sends 8 steps; its ETS.*needs at least 14. Fix: send more recent history"):
        forecaster.forecast(panel.tail(8), pd.DataFrame())


def test_a_constant_series_falls_back_to_its_last_value_and_says_so() -> None:
    forecaster, panel = fitted({"flat": np.full(24, 7.0), "a": seasonal(24, seed=5)}, trend="none", seasonal="none")
    out = forecaster.forecast(panel, pd.DataFrame())
    flat = out[out["unique_id"] == "flat"]
    assert (flat["forecast"] == 7.0).all() and (flat["upper"] == 7.0).all()
    described = forecaster.describe()["series"]["flat"]
    assert described["form"] == "naive" and "constant series" in described["note"]


def test_a_series_too_short_for_a_season_drops_it_and_says_so() -> None:
    forecaster, _ = fitted({"short": seasonal(14, seed=6)})
    described = forecaster.describe()["series"]["short"]
    assert described["form"].endswith("N)") and "shorter than two seasons" in described["note"]


def test_a_season_longer_than_24_is_taken_out_by_stl() -> None:
    cfg = config(horizon=48)
    t = np.arange(48 * 8)
    values = 50 + 10 * np.sin(2 * np.pi * t / 48) + np.random.default_rng(7).normal(scale=0.5, size=len(t))
    panel = panel_of({"a": values}, cfg, frequency="30min")
    forecaster = build_forecaster(cfg).fit(panel, FitContext())
    assert "by STL)[48]" in forecaster.describe()["series"]["a"]["form"]
    out = forecaster.forecast(panel, pd.DataFrame())
    expected = 50 + 10 * np.sin(2 * np.pi * np.arange(len(t), len(t) + 48) / 48)
    assert np.abs(out["forecast"].to_numpy() - expected).max() < 2.5


def test_multiplicative_seasonality_on_a_series_with_zeros_falls_back_to_additive() -> None:
    values = seasonal(40, seed=8)
    values[5] = 0.0
    forecaster, _ = fitted({"a": values}, trend="none", seasonal="multiplicative")
    described = forecaster.describe()["series"]["a"]
    assert "A)[4]" in described["form"] and "needs values > 0" in described["note"]


def test_missing_statsmodels_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config()
    panel = panel_of({"a": seasonal(20, seed=9)}, cfg)
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.exponential_smoothing.ets", None)
    needs = r"needs statsmodels, which is not installed.*Fix: pip install 'modelmill\[forecast\]'"
    with pytest.raises(ModelError, match=needs):
        build_forecaster(cfg).fit(panel, FitContext())


def test_a_series_not_fitted_and_an_unfitted_model_are_clear_errors() -> None:
    forecaster, _ = fitted({"a": seasonal(20, seed=10)}, trend="none", seasonal="none")
    other = panel_of({"z": seasonal(20, seed=11)}, config())
    with pytest.raises(DataError, match="series 'z' was not in the data the ets model was fitted on.*Fix: refit"):
        forecaster.forecast(other, pd.DataFrame())
    with pytest.raises(ModelError, match="ets is not fitted yet"):
        ETS(config()).state()


def test_another_history_keeps_the_fitted_sigma() -> None:
    rng = np.random.default_rng(12)
    values = np.cumsum(rng.normal(size=60)) - 5.0  # crosses zero: additive errors only
    values[-12:] += rng.normal(scale=4.0, size=12)  # a noisier recent stretch must not narrow or widen it
    forecaster, panel = fitted({"a": values}, trend="none", seasonal="none")
    fit = forecaster.fits_["a"]
    assert fit.form.name == "ETS(A,N,N)" and fit.scale is not None
    out = forecaster.forecast(panel.tail(20), pd.DataFrame())
    half = float(out["upper"].iloc[0] - out["forecast"].iloc[0])  # one step ahead: z·σ
    assert half == pytest.approx(normal_quantile(0.8) * np.sqrt(fit.scale), rel=1e-6)
