"""The task seam in the config: `task:` picks the config shape; a forecast config's own checks."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from modelmill.config import ForecastConfig, PipelineConfig, dump_config, parse_config, parse_task_config
from modelmill.errors import ConfigError


def forecast(**extra: Any) -> dict[str, Any]:
    return {"task": "forecast", "name": "demand", "data": {"source": "sales.csv"},
            "series": {"time": "week", "target": "units", "id": "store", "horizon": 8, "future": ["price"]}, **extra}


def test_task_picks_the_config_shape() -> None:
    assert isinstance(parse_task_config(forecast()), ForecastConfig)
    predict = {"name": "p", "data": {"source": "a.csv"}, "features": [{"name": "x", "type": "number"}],
               "target": {"name": "y", "type": "number"}}
    assert isinstance(parse_task_config(predict), PipelineConfig)
    assert parse_task_config({**predict, "task": "predict"}).task == "predict"


def test_an_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"task: unknown task 'forcast' \(did you mean 'forecast'\?\); valid: "
                                          "forecast, predict"):
        parse_task_config(forecast(task="forcast"))


def test_a_predict_only_command_refuses_a_forecast_config_clearly() -> None:
    with pytest.raises(ConfigError, match="is a `task: forecast` config, and this takes `task: predict` configs only"):
        parse_config(forecast())


def test_keys_of_the_forecast_shape_are_checked_with_suggestions() -> None:
    with pytest.raises(ConfigError, match=r"series.horizn: unknown key 'horizn' \(did you mean 'horizon'\?\)"):
        parse_task_config(forecast(series={"time": "week", "target": "units", "horizn": 8}))
    with pytest.raises(ConfigError, match=r"model.type: unknown type 'ets2' \(did you mean 'ets'\?\)"):
        parse_task_config(forecast(model={"type": "ets2"}))
    with pytest.raises(ConfigError, match="features: a forecast's features are window settings .*Fix: name the "
                                          "columns under series"):
        parse_task_config(forecast(features=[{"name": "x", "type": "number"}]))


def test_a_split_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="data.split: .*rolling-origin backtesting.*Fix: remove data.split"):
        parse_task_config(forecast(data={"source": "sales.csv", "split": {"method": "random"}}))


def test_a_column_has_one_role() -> None:
    with pytest.raises(ConfigError, match="future\\[0\\]: column 'units' is already the target column"):
        parse_task_config(forecast(series={"time": "week", "target": "units", "horizon": 8, "future": ["units"]}))


def test_a_dumped_forecast_config_loads_back_the_same() -> None:
    config = parse_task_config(forecast(model={"type": "ets", "trend": "damped"}))
    text = dump_config(config)
    assert "split" not in yaml.safe_load(text)["data"]
    assert parse_task_config(yaml.safe_load(text)) == config


@pytest.mark.parametrize("section,value,fragment", [
    ("series", {"time": "week", "target": "units", "horizon": 0}, "series.horizon"),
    ("backtest", {"interval": 1.2}, "backtest.interval"),
    ("features", {"lags": []}, "lags: an empty list"),
    ("features", {"windows": [0, 3]}, "windows: steps must be ≥ 1"),
])
def test_out_of_range_values_name_their_path(section: str, value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_task_config(forecast(**{section: value}))
