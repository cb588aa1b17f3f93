"""auto: candidates scored by held-out MASE through the registry, refitted and weighed by it, the
interval calibrated on the held-out horizons."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.config import ForecastConfig, parse_task_config
from modelmill.errors import ModelError
from modelmill.forecasting import ets  # noqa: F401  (registers the ets candidate)
from modelmill.forecasting.auto import AutoForecaster, candidate_config
from modelmill.forecasting.combining import mean_forecast, rescaled
from modelmill.forecasting.base import FORECASTERS, FitContext, ForecasterState, build_forecaster
from modelmill.forecasting.naive import SeasonalNaive
from modelmill.forecasting.panel import Panel, read_panel

pytest.importorskip("statsmodels")

CANDIDATES = ["seasonal_naive", "ets"]


def config(candidates: list[str] = CANDIDATES) -> ForecastConfig:
    raw = {"task": "forecast", "name": "t", "data": {"source": "x.csv"},
           "series": {"time": "when", "target": "sales", "id": "store", "horizon": 4},
           "model": {"type": "auto", "candidates": candidates}}
    parsed = parse_task_config(raw)
    assert isinstance(parsed, ForecastConfig)
    return parsed


def panel_of(values: dict[str, np.ndarray], cfg: ForecastConfig) -> Panel:
    rows = [pd.DataFrame({"store": key, "when": pd.date_range("2010-01-01", periods=len(v), freq="QS"),
                          "sales": v}) for key, v in values.items()]
    panel, _ = read_panel(pd.concat(rows, ignore_index=True), cfg, source="t.csv")
    return panel


def trend(steps: int, seed: int) -> np.ndarray:
    """A steep straight line with a little noise: seasonal naive lags a season behind it (MASE
    about 1 by definition), a trended ETS follows it. Short and crossing zero, so that ETS tries
    few forms (no season under 18 steps, additive only) and the test stays fast."""
    return -30 + 5.0 * np.arange(steps) + np.random.default_rng(seed).normal(scale=0.5, size=steps)


def test_auto_weighs_the_clearly_better_candidate_most_and_reports_every_one() -> None:
    cfg = config()
    panel = panel_of({"a": trend(17, 0), "b": trend(16, 1)}, cfg)
    model = build_forecaster(cfg).fit(panel, FitContext())
    described = model.describe()
    assert described["members"] == ["ets", "seasonal_naive"]  # the best first
    scores = described["candidates"]
    assert set(scores) == set(CANDIDATES) and all(s["seconds"] >= 0 for s in scores.values())
    assert scores["ets"]["mase"] < 0.5 < 0.8 < scores["seasonal_naive"]["mase"]
    assert described["weights"]["ets"] > 0.7
    # each candidate refitted on all the steps: the same forecasts as fitting it directly, weighed,
    # the interval scaled by what the held-out origins showed
    direct = [build_forecaster(candidate_config(cfg, name)).fit(panel, FitContext()).forecast(panel, pd.DataFrame())
              for name in described["members"]]
    weights = [described["weights"][name] for name in described["members"]]
    expected = rescaled(mean_forecast(direct, weights), described["interval_scale"])
    pd.testing.assert_frame_equal(model.forecast(panel, pd.DataFrame()), expected)
    assert described["interval_scale"] != 1.0


def test_seasonal_naive_leads_on_a_strong_season_too_short_for_a_seasonal_ets() -> None:
    cfg = config()
    rng = np.random.default_rng(5)
    pattern = np.tile([5.0, 40.0, 12.0, 60.0], 5)[:17] + rng.normal(scale=0.5, size=17)
    model = build_forecaster(cfg).fit(panel_of({"a": pattern}, cfg), FitContext())
    scores = model.describe()["candidates"]
    assert scores["seasonal_naive"]["mase"] < 2 < 10 < scores["ets"]["mase"]  # ETS has no season under 18 steps
    assert model.describe()["members"][0] == "seasonal_naive" and model.describe()["weights"]["seasonal_naive"] > 0.95


def test_state_round_trip_delegates_to_the_members() -> None:
    cfg = config()
    panel = panel_of({"a": trend(16, 2)}, cfg)
    model = build_forecaster(cfg).fit(panel, FitContext())
    state = model.state()
    again = AutoForecaster.from_state(cfg, ForecasterState(json=json.loads(json.dumps(state.json))))
    pd.testing.assert_frame_equal(again.forecast(panel, pd.DataFrame()), model.forecast(panel, pd.DataFrame()))
    assert again.describe() == model.describe() and again.describe()["candidates"].keys() == set(CANDIDATES)


def test_candidates_are_built_through_the_registry() -> None:
    built: list[str] = []

    class Recorded(SeasonalNaive):
        def __init__(self, config: ForecastConfig) -> None:
            built.append(config.model.type)
            super().__init__(config)

    cfg = config(["seasonal_naive"])
    panel = panel_of({"a": trend(24, 3)}, cfg)
    with FORECASTERS.swapped("seasonal_naive", Recorded):
        model = build_forecaster(cfg).fit(panel, FitContext())
    assert built == ["seasonal_naive"] * 4  # three held-out origins, then the refit on all steps
    assert model.describe()["origins"] == 3


def test_a_failing_candidate_is_reported_and_all_failing_is_a_clear_error() -> None:
    class Broken(SeasonalNaive):
        def fit(self, train: Panel, context: FitContext) -> Any:
            raise ModelError("broken on purpose")

    cfg = config()
    panel = panel_of({"a": trend(16, 4)}, cfg)
    with FORECASTERS.swapped("seasonal_naive", Broken):
        model = build_forecaster(cfg).fit(panel, FitContext())
        assert model.describe()["candidates"]["seasonal_naive"]["error"] == "broken on purpose"
        assert model.describe()["chosen"] == "ets"
        with pytest.raises(ModelError, match="no candidate could be scored .*seasonal_naive: broken on purpose.*Fix:"):
            build_forecaster(config(["seasonal_naive"])).fit(panel, FitContext())


class Shifted(SeasonalNaive):
    """The seasonal naive forecast moved by ``shift`` (a forecaster with a known bias), its
    interval as narrow as ``half_width``."""

    shift, half_width = 0.0, 1.0

    def forecast(self, history: Panel, future: pd.DataFrame) -> pd.DataFrame:
        out = super().forecast(history, future)
        out["forecast"] += self.shift
        out["lower"], out["upper"] = out["forecast"] - self.half_width, out["forecast"] + self.half_width
        return out


def seasonal(steps: int, seed: int) -> np.ndarray:
    """A season of 4 repeated exactly, plus noise: the seasonal naive forecast is right but for it."""
    return np.tile([10.0, 40.0, 20.0, 60.0], steps // 4 + 1)[:steps] + np.random.default_rng(seed).normal(size=steps)


def test_two_opposite_biases_are_weighed_by_held_out_mase_and_nearly_cancel() -> None:
    class Above(Shifted):
        shift = 8.0

    class Below(Shifted):
        shift = -8.0

    cfg = config()
    panel = panel_of({"a": seasonal(24, 6), "b": seasonal(24, 7)}, cfg)
    with FORECASTERS.swapped("seasonal_naive", Above), FORECASTERS.swapped("ets", Below):
        model = build_forecaster(cfg).fit(panel, FitContext())
        described = model.describe()
        members = described["members"]  # the best first: either bias may lead
        assert sorted(members) == ["ets", "seasonal_naive"] and described["chosen"] == "+".join(members)
        mase = {name: described["candidates"][name]["mase"] for name in members}
        weights = described["weights"]
        assert weights[members[0]] >= weights[members[1]] > 0.3
        assert weights["ets"] / weights["seasonal_naive"] == pytest.approx((mase["seasonal_naive"] / mase["ets"]) ** 2)
        assert described["held_out_mase"] < 0.5 * min(mase.values())  # the biases cancel on the held-out steps
        forecast = model.forecast(panel, pd.DataFrame())
        plain = SeasonalNaive(candidate_config(cfg, "seasonal_naive")).fit(panel, FitContext())
        shift = 8.0 * (weights["seasonal_naive"] - weights["ets"])
        np.testing.assert_allclose(forecast["forecast"], plain.forecast(panel, pd.DataFrame())["forecast"] + shift)
        state = model.state()
        again = AutoForecaster.from_state(cfg, ForecasterState(json=json.loads(json.dumps(state.json))))
        pd.testing.assert_frame_equal(again.forecast(panel, pd.DataFrame()), forecast)
        assert again.describe()["members"] == members and again.describe()["weights"] == weights


def test_mase_weights_are_inverse_squares_summing_to_one() -> None:
    from modelmill.forecasting.combining import mase_weights

    assert mase_weights([0.5, 1.5]) == pytest.approx([0.9, 0.1])
    assert mase_weights([2.0]) == [1.0]
    assert mase_weights([0.0, 1.0, 0.0]) == [0.5, 0.0, 0.5]  # perfect candidates take all the weight


def test_the_interval_is_scaled_to_cover_the_held_out_points() -> None:
    class TooNarrow(Shifted):
        half_width = 0.01  # the noise has σ = 1: an interval of ± 0.01 covers almost nothing

    cfg = config(["seasonal_naive"])
    series = {"a": seasonal(40, 8), "b": seasonal(40, 9), "c": seasonal(40, 10)}
    panel = panel_of(series, cfg)
    with FORECASTERS.swapped("seasonal_naive", TooNarrow):
        model = build_forecaster(cfg).fit(panel, FitContext())
        described = model.describe()
        assert described["held_out_coverage"]["before"] < 0.1
        assert described["held_out_coverage"]["after"] >= 0.8  # the conformal quantile: at least 80% at each origin
        assert described["interval_scale"] > 50
        # each held-out origin's own factor, the largest of them
        per_origin = described["interval_scales_by_origin"]
        assert len(per_origin) == 3 and described["interval_scale"] == max(per_origin) > min(per_origin)
        forecast = model.forecast(panel, pd.DataFrame())
        half = forecast["upper"] - forecast["forecast"]
        np.testing.assert_allclose(half, 0.01 * described["interval_scale"])
        np.testing.assert_allclose(forecast["forecast"] - forecast["lower"], half)


def test_interval_scale_is_the_conformal_quantile_of_each_sides_ratio() -> None:
    from modelmill.forecasting.combining import interval_scale

    # forecast 0, bounds −1 and +2; actual values at ratios 0.5 (below), 1.5 (above: 3 / 2), 3, 0, 4
    scored = pd.DataFrame({"forecast": 0.0, "lower": -1.0, "upper": 2.0,
                           "actual": [-0.5, 3.0, -3.0, 0.0, 8.0]})
    # n = 5, coverage 0.6: the ⌈6 · 0.6⌉ = 4th smallest of [0, 0.5, 1.5, 3, 4] is 3
    assert interval_scale(scored, 0.6) == 3.0
    # coverage 0.8: ⌈6 · 0.8⌉ = 5th, the largest ratio
    assert interval_scale(scored, 0.8) == 4.0
    wider = rescaled(scored, 3.0)
    assert wider["lower"].tolist() == [-3.0] * 5 and wider["upper"].tolist() == [6.0] * 5
    # no half-width to scale: no factor (auto then leaves the interval as it is)
    assert math.isnan(interval_scale(scored.assign(lower=0.0, upper=0.0), 0.8))


def test_a_bundle_saved_before_combining_still_loads() -> None:
    cfg = config()
    panel = panel_of({"a": trend(16, 11)}, cfg)
    ets_model = build_forecaster(candidate_config(cfg, "ets")).fit(panel, FitContext())
    old = ForecasterState(json={"chosen": "ets", "state": json.loads(json.dumps(ets_model.state().json)),
                                "describe": {"chosen": "ets", "origins": 2, "candidates": {
                                    "ets": {"mase": 0.2, "seconds": 1.0}, "seasonal_naive": {"mase": 1.1,
                                                                                             "seconds": 0.0}}}})
    again = AutoForecaster.from_state(cfg, old)
    assert again.describe()["chosen"] == "ets" and again.describe()["interval_scale"] == 1.0
    pd.testing.assert_frame_equal(again.forecast(panel, pd.DataFrame()), ets_model.forecast(panel, pd.DataFrame()))
    with pytest.raises(ModelError, match="malformed"):
        AutoForecaster.from_state(cfg, ForecasterState(json={"members": ["ets"], "states": {}}))
    saved = json.loads(json.dumps(build_forecaster(cfg).fit(panel, FitContext()).state().json))
    with pytest.raises(ModelError, match="malformed"):
        AutoForecaster.from_state(cfg, ForecasterState(json={**saved, "weights": [1.0] * (len(saved["members"]) + 1)}))


def test_a_backtest_fits_each_candidate_once_per_history_and_forecasts_as_without_the_memo(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill.forecasting.backtest import run_backtest
    from modelmill.forecasting.base import ForecastMemo

    fitted: list[int] = []

    class Counted(SeasonalNaive):
        def fit(self, train: Panel, context: FitContext) -> Any:
            fitted.append(len(train.frame))
            return super().fit(train, context)

    class Above(Shifted):  # in place of ETS, whose forms on 40 seasonal steps take minutes
        shift, half_width = 3.0, 5.0

    raw = config().model_dump(mode="json", exclude_unset=True)
    cfg = parse_task_config({**raw, "backtest": {"cutoffs": 3}})
    assert isinstance(cfg, ForecastConfig)
    panel = panel_of({"a": seasonal(40, 12) + np.arange(40.0), "b": seasonal(40, 13)}, cfg)
    with FORECASTERS.swapped("seasonal_naive", Counted), FORECASTERS.swapped("ets", Above):
        with_memo = run_backtest(cfg, panel)
        reused = [c["model"]["candidates"]["ets"].get("reused", 0) for c in with_memo.per_cutoff]
        fits_with_memo = len(fitted)
        fitted.clear()
        monkeypatch.setattr(ForecastMemo, "get", lambda *args: None)  # nothing reused: every fit made again
        without = run_backtest(cfg, panel)
    # cut-off 1: three held-out fits and the refit; then each cut-off's held-out histories are the
    # earlier cut-offs' (fitted held out, or refitted to forecast them): only the refit is new
    assert fits_with_memo == 4 + 1 + 1 and len(fitted) == 3 * 4
    assert reused == [0, 3, 3]
    pd.testing.assert_frame_equal(with_memo.scored, without.scored)
    assert with_memo.metrics == without.metrics


def test_a_candidate_failing_only_on_all_the_steps_is_left_out_and_the_others_reweighed() -> None:
    class FailsOnAll(SeasonalNaive):
        def fit(self, train: Panel, context: FitContext) -> Any:
            if len(train.frame) == 2 * 24:  # the whole panel, not a held-out history
                raise ModelError("too much data on purpose")
            return super().fit(train, context)

    class Above(Shifted):
        shift = 2.0

    cfg = config()
    panel = panel_of({"a": seasonal(24, 14), "b": seasonal(24, 15)}, cfg)
    with FORECASTERS.swapped("seasonal_naive", FailsOnAll), FORECASTERS.swapped("ets", Above):
        model = build_forecaster(cfg).fit(panel, FitContext())
    described = model.describe()
    assert described["members"] == ["ets"] and described["weights"] == {"ets": 1.0}
    assert "too much data on purpose" in described["candidates"]["seasonal_naive"]["error"]
    assert described["candidates"]["seasonal_naive"]["mase"] is not None  # it was scored, then failed
    with FORECASTERS.swapped("seasonal_naive", FailsOnAll), \
            pytest.raises(ModelError, match="no candidate could be fitted on all the steps.*too much data"):
        build_forecaster(config(["seasonal_naive"])).fit(panel, FitContext())
