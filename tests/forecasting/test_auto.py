"""auto: candidates scored by held-out MASE through the registry, the best refitted."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.config import ForecastConfig, parse_task_config
from modelmill.errors import ModelError
from modelmill.forecasting import ets  # noqa: F401  (registers the ets candidate)
from modelmill.forecasting.auto import AutoForecaster, candidate_config
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


def test_auto_chooses_the_clearly_better_candidate_and_reports_every_one() -> None:
    cfg = config()
    panel = panel_of({"a": trend(17, 0), "b": trend(16, 1)}, cfg)
    model = build_forecaster(cfg).fit(panel, FitContext())
    described = model.describe()
    assert described["chosen"] == "ets"
    scores = described["candidates"]
    assert set(scores) == set(CANDIDATES) and all(s["seconds"] >= 0 for s in scores.values())
    assert scores["ets"]["mase"] < 0.5 < 0.8 < scores["seasonal_naive"]["mase"]
    # the chosen type refitted on all the steps: the same forecasts as fitting it directly
    direct = build_forecaster(candidate_config(cfg, "ets")).fit(panel, FitContext())
    pd.testing.assert_frame_equal(model.forecast(panel, pd.DataFrame()), direct.forecast(panel, pd.DataFrame()))


def test_seasonal_naive_wins_on_a_strong_season_too_short_for_a_seasonal_ets() -> None:
    cfg = config()
    rng = np.random.default_rng(5)
    pattern = np.tile([5.0, 40.0, 12.0, 60.0], 5)[:17] + rng.normal(scale=0.5, size=17)
    model = build_forecaster(cfg).fit(panel_of({"a": pattern}, cfg), FitContext())
    scores = model.describe()["candidates"]
    assert scores["seasonal_naive"]["mase"] < 2 < 10 < scores["ets"]["mase"]  # ETS has no season under 18 steps
    assert model.describe()["chosen"] == "seasonal_naive"


def test_state_round_trip_delegates_to_the_chosen_type() -> None:
    cfg = config()
    panel = panel_of({"a": trend(16, 2)}, cfg)
    model = build_forecaster(cfg).fit(panel, FitContext())
    state = model.state()
    again = AutoForecaster.from_state(cfg, ForecasterState(json=json.loads(json.dumps(state.json))))
    pd.testing.assert_frame_equal(again.forecast(panel, pd.DataFrame()), model.forecast(panel, pd.DataFrame()))
    assert again.describe()["chosen"] == "ets" and again.describe()["candidates"].keys() == set(CANDIDATES)


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
