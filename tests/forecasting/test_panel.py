"""Reading series into a panel: the forms of time, the frequency, and every bad input named
by column and rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelmill.config import ForecastConfig, parse_task_config
from modelmill.errors import ConfigError, DataError
from modelmill.forecasting.panel import check_history, read_panel, season_for


def config(**series: object) -> ForecastConfig:
    raw = {"task": "forecast", "name": "t", "data": {"source": "x.csv"},
           "series": {"time": "when", "target": "sales", "horizon": 3, **series}}
    parsed = parse_task_config(raw)
    assert isinstance(parsed, ForecastConfig)
    return parsed


def stores(steps: int = 12) -> pd.DataFrame:
    months = [f"{2020 + m // 12} {['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][m % 12]}"
              for m in range(steps)]
    return pd.DataFrame({"store": ["a"] * steps + ["b"] * steps, "when": months * 2,
                         "sales": np.arange(2 * steps, dtype=float), "price": 1.0})


def test_months_of_two_series_become_a_monthly_panel() -> None:
    panel, future = read_panel(stores(), config(id="store", future=["price"]), source="s.csv")
    assert panel.frequency == "MS" and panel.season == 12
    assert panel.ids == ["a", "b"] and len(future) == 0
    assert panel.frame["ds"].iloc[1] == pd.Timestamp("2020-02-01")
    assert list(panel.frame.columns) == ["unique_id", "ds", "y", "price"]


def test_rows_after_the_last_known_target_are_future_rows() -> None:
    frame = stores()
    frame.loc[[10, 11, 22, 23], "sales"] = np.nan
    panel, future = read_panel(frame, config(id="store", future=["price"]), source="s.csv")
    assert panel.lengths().tolist() == [10, 10]
    assert len(future) == 4 and future["y"].isna().all()


@pytest.mark.parametrize("frequency,season", [("30min", 48), ("h", 24), ("D", 7), ("W-MON", 52), ("MS", 12),
                                              ("QS-JAN", 4), ("YS", 1)])
def test_season_follows_the_frequency(frequency: str, season: int) -> None:
    assert season_for(frequency) == season


def test_duplicate_steps_name_the_rows_and_the_series() -> None:
    frame = pd.concat([stores(), stores().iloc[[4]]], ignore_index=True)
    with pytest.raises(DataError, match=r"column 'when' rows 5, 25: 2 rows share a time step .*series 'a'"):
        read_panel(frame, config(id="store"), source="s.csv")


def test_a_missing_step_is_irregular_and_named() -> None:
    frame = stores().drop(index=[5]).reset_index(drop=True)
    with pytest.raises(DataError, match=r"rows 6: series 'a' is not regular at step MS: after 2020-05-01 00:00:00 "
                                        r"comes 2020-07-01"):
        read_panel(frame, config(id="store"), source="s.csv")


def test_a_target_that_is_no_number_is_named() -> None:
    frame = stores()
    frame["sales"] = frame["sales"].astype(object)
    frame.loc[3, "sales"] = "n/a"
    with pytest.raises(DataError, match=r"column 'sales' rows 4: 1 value\(s\) are not finite numbers \('n/a'\)"):
        read_panel(frame, config(id="store"), source="s.csv")


def test_a_gap_inside_the_history_is_refused() -> None:
    frame = stores()
    frame.loc[4, "sales"] = np.nan
    with pytest.raises(DataError, match="rows 5: 1 target value.*missing inside the history"):
        read_panel(frame, config(id="store"), source="s.csv")


def test_times_that_do_not_parse_are_named() -> None:
    frame = stores()
    frame.loc[2, "when"] = "someday"
    with pytest.raises(DataError, match=r"rows 3: 1 value\(s\) of the time column are missing or not times"):
        read_panel(frame, config(id="store"), source="s.csv")


def test_a_missing_column_is_named() -> None:
    with pytest.raises(DataError, match=r"column\(s\) 'price' not found"):
        read_panel(stores().drop(columns=["price"]), config(id="store", future=["price"]), source="s.csv")


def test_a_horizon_longer_than_the_history_is_refused() -> None:
    panel, _ = read_panel(stores(4), config(id="store"), source="s.csv")
    with pytest.raises(DataError, match=r"2 series hold no more steps than the horizon \(5\): 'a' \(4 steps\)"):
        check_history(panel, 5, source="s.csv")


def test_a_static_covariate_must_be_constant_per_series() -> None:
    frame = stores().assign(size=lambda f: np.where(f.index == 3, 2.0, 1.0))
    with pytest.raises(DataError, match="column 'size'.*changes within series 'a'"):
        read_panel(frame, config(id="store", static=["size"]), source="s.csv")


def test_a_frequency_that_is_not_pandas_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="series.frequency: 'fortnightly' is no pandas frequency"):
        read_panel(stores(), config(id="store", frequency="fortnightly"), source="s.csv")


def test_quarters_and_iso_weeks_read_as_their_first_day() -> None:
    quarters = pd.DataFrame({"when": ["2019 Q3", "2019 Q4", "2020 Q1", "2020 Q2"], "sales": [1.0, 2, 3, 4]})
    panel, _ = read_panel(quarters, config(horizon=1), source="q.csv")
    assert panel.frequency == "QS" and panel.frame["ds"].iloc[0] == pd.Timestamp("2019-07-01")
    weeks = pd.DataFrame({"when": ["2019 W52", "2020 W01", "2020 W02", "2020 W03"], "sales": [1.0, 2, 3, 4]})
    panel, _ = read_panel(weeks, config(horizon=1), source="w.csv")
    assert panel.frequency == "W-MON" and panel.frame["ds"].iloc[1] == pd.Timestamp("2019-12-30")
