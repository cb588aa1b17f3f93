"""The forecast pipeline end to end on small series: backtest, bundle, forecasts from a
frame and from the kept history, resume, and the errors a user meets."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.errors import ConfigError, DataError
from modelmill.forecasting import backtest as backtest_module
from modelmill.forecasting.pipeline import ForecastPipeline
from modelmill.tasks import load_task

HORIZON = 6


def shops(days: int = 90, *, seed: int = 0) -> pd.DataFrame:
    """Two daily series with a weekly pattern, a trend, and a price that moves sales."""
    rng = np.random.default_rng(seed)
    rows = []
    for shop, level in (("north", 50.0), ("south", 20.0)):
        for day, when in enumerate(pd.date_range("2024-01-01", periods=days, freq="D")):
            price = 1.0 + 0.2 * np.sin(day / 5)
            weekly = 10 * np.sin(2 * np.pi * day / 7)
            rows.append({"shop": shop, "date": when.date().isoformat(), "price": round(price, 3),
                         "sold": level + weekly + 0.1 * day - 5 * price + rng.normal(0, 1)})
    return pd.DataFrame(rows)


def config(model: str = "seasonal_naive", **extra: Any) -> dict[str, Any]:
    return {"task": "forecast", "name": "shops", "data": {"source": "shops.csv"},
            "series": {"time": "date", "id": "shop", "target": "sold", "horizon": HORIZON, "future": ["price"]},
            "model": {"type": model}, "evaluation": {"plots": True, "report": True}, **extra}


def future_rows(frame: pd.DataFrame, days: int) -> pd.DataFrame:
    """The next ``HORIZON`` days of each shop, with the price and no target."""
    last = pd.Timestamp(frame["date"].max())
    steps = pd.date_range(last + pd.Timedelta(days=1), periods=HORIZON, freq="D")
    return pd.DataFrame([{"shop": shop, "date": d.date().isoformat(), "price": 1.1, "sold": np.nan}
                         for shop in ("north", "south") for d in steps])


def test_backtest_bundle_and_identical_forecasts_after_loading(tmp_path: Path) -> None:
    frame = shops()
    pipeline = ForecastPipeline(config(), base_dir=tmp_path).fit(frame)
    metrics = pipeline.metrics_
    assert metrics["points"] == 3 * HORIZON * 2  # three cut-offs, a horizon each, two shops
    assert 0 < metrics["mase"] < 3 and 0 <= metrics["coverage"] <= 1
    assert [c["cutoff"] for c in metrics["cutoffs"]] == ["2024-03-12 00:00:00", "2024-03-18 00:00:00",
                                                         "2024-03-24 00:00:00"]
    assert set(pipeline.plots_) == {"forecast_1.png", "forecast_2.png"}
    bundle = pipeline.save(tmp_path / "bundle")
    request = pd.concat([frame, future_rows(frame, 90)], ignore_index=True)
    before = pipeline.predict(request)
    loaded = load_task(bundle)
    after = loaded.predict(request)
    pd.testing.assert_frame_equal(before, after)
    assert list(after.columns) == ["shop", "date", "forecast", "lower", "upper"] and len(after) == 2 * HORIZON
    assert (after["lower"] <= after["forecast"]).all() and (after["forecast"] <= after["upper"]).all()
    assert (bundle / "report.html").read_text().count("forecast from") == 0  # plots are images, not text
    assert "Backtest cut-offs" in (bundle / "report.html").read_text()


def test_a_series_id_forecasts_from_the_kept_history(tmp_path: Path) -> None:
    frame = shops()
    pipeline = ForecastPipeline(config(), base_dir=tmp_path).fit(frame, evaluate=False)
    future = future_rows(frame, 90)
    from_history = pipeline.predict(pd.concat([frame, future], ignore_index=True))
    north = future[future["shop"] == "north"].drop(columns=["sold"])
    from_kept = pipeline.forecast(north, series=["north"])
    pd.testing.assert_frame_equal(from_kept, from_history[from_history["shop"] == "north"].reset_index(drop=True))
    with pytest.raises(DataError, match="unknown series 'east'"):
        pipeline.forecast(future.drop(columns=["sold"]), series=["east"])


def test_missing_future_covariates_name_the_column_series_and_step(tmp_path: Path) -> None:
    frame = shops()
    pipeline = ForecastPipeline(config(), base_dir=tmp_path).fit(frame, evaluate=False)
    future = future_rows(frame, 90)
    future.loc[3, "price"] = np.nan
    with pytest.raises(DataError, match=r"column 'price': future covariate values are missing for 1 forecast "
                                        r"step\(s\) \(series 'north' at 2024-04-03"):
        pipeline.predict(pd.concat([frame, future], ignore_index=True))
    with pytest.raises(DataError, match="column 'price'.*missing for 12 forecast step"):
        pipeline.predict(frame)


def test_too_short_a_history_for_the_backtest_says_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="in the frame column 'shop': series 'north' holds 2 steps before the oldest backtest cut-off.*Fix: a shorter "
                                        "series.horizon, fewer backtest.cutoffs"):
        ForecastPipeline(config(), base_dir=tmp_path).fit(shops(20))


def test_encryption_is_refused_for_now(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="encryption is not available for task: forecast"):
        ForecastPipeline(config(), base_dir=tmp_path).fit(shops(), key=b"k" * 32)


class Killed(Exception):
    """Stands for the process dying (the e2e test kills a real one with SIGKILL)."""


def test_a_resumed_run_reuses_the_finished_cutoffs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that died at the second cut-off resumes there: the first is not fitted again, and
    the result equals an uninterrupted run's."""
    frame = shops()
    whole = ForecastPipeline(config(), base_dir=tmp_path).fit(frame).metrics_
    calls: list[str] = []
    original = backtest_module._one_cutoff

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[4].label)
        if calls == ["cut-off 1 of 3", "cut-off 2 of 3"]:
            raise Killed  # the run dies while fitting cut-off 2
        return original(*args, **kwargs)

    monkeypatch.setattr(backtest_module, "_one_cutoff", dying)
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        ForecastPipeline(config(), base_dir=tmp_path).fit(frame, run_dir=run_dir)
    calls.clear()
    resumed = ForecastPipeline(config(), base_dir=tmp_path).fit(frame, run_dir=run_dir, resume=True).metrics_
    assert calls == ["cut-off 2 of 3", "cut-off 3 of 3"]
    assert {k: v for k, v in resumed.items() if k != "cutoffs"} == {k: v for k, v in whole.items() if k != "cutoffs"}


def test_evaluate_scores_the_latest_horizon_of_new_data(tmp_path: Path) -> None:
    pipeline = ForecastPipeline(config(), base_dir=tmp_path).fit(shops(), evaluate=False)
    metrics = pipeline.evaluate(shops(120, seed=1), out_dir=tmp_path / "evaluation")
    assert metrics["points"] == 2 * HORIZON and metrics["mase"] > 0
    assert (tmp_path / "evaluation" / "report.html").is_file()


def test_a_series_sent_and_named_at_once_is_refused(tmp_path: Path) -> None:
    frame = shops()
    pipeline = ForecastPipeline(config(), base_dir=tmp_path).fit(frame, evaluate=False)
    request = pd.concat([frame, future_rows(frame, 90)], ignore_index=True)
    with pytest.raises(DataError, match="'north' are both sent as history and named in `series`"):
        pipeline.forecast(request, series=["north"])


def test_series_ending_at_different_times_backtest_with_a_future_covariate(tmp_path: Path) -> None:
    frame = shops()
    frame = frame[~((frame["shop"] == "south") & (frame["date"] > "2024-03-25"))]  # south ends 5 days early
    metrics = ForecastPipeline(config(), base_dir=tmp_path).fit(frame).metrics_
    assert metrics["points"] == 3 * HORIZON * 2 - 5  # south's steps after its end are not scored


def test_a_resumed_run_of_another_config_fits_again(tmp_path: Path) -> None:
    frame = shops()
    run_dir = tmp_path / "run"
    ForecastPipeline(config(), base_dir=tmp_path).fit(frame, run_dir=run_dir)
    changed = config()
    changed["backtest"] = {"interval": 0.5}
    resumed = ForecastPipeline(changed, base_dir=tmp_path).fit(frame, run_dir=run_dir, resume=True).metrics_
    fresh = ForecastPipeline(changed, base_dir=tmp_path).fit(frame).metrics_
    assert resumed["coverage"] == fresh["coverage"]


def test_one_series_of_integer_years_forecasts_its_kept_history(tmp_path: Path) -> None:
    years = pd.DataFrame({"year": range(1970, 2020), "sold": np.linspace(10.0, 60.0, 50)})
    raw = {"task": "forecast", "name": "yearly", "data": {"source": "y.csv"},
           "series": {"time": "year", "target": "sold", "horizon": 2}, "model": {"type": "seasonal_naive"}}
    pipeline = ForecastPipeline(raw, base_dir=tmp_path).fit(years)
    forecasts = pipeline.forecast()
    assert forecasts["year"].tolist() == [pd.Timestamp("2020-01-01"), pd.Timestamp("2021-01-01")]


def test_the_final_auto_fit_reuses_the_backtests_fits_of_its_held_out_horizons(tmp_path: Path) -> None:
    cfg = config("auto", evaluation={"plots": False, "report": False})
    cfg["model"]["candidates"] = ["seasonal_naive"]
    pipeline = ForecastPipeline(cfg, base_dir=tmp_path).fit(shops())
    # the latest cut-off is a horizon before the end: the final fit's three held-out histories
    # are the three cut-offs', already fitted
    assert pipeline.metrics_["model"]["candidates"]["seasonal_naive"]["reused"] == 3
    assert [c["model"]["candidates"]["seasonal_naive"].get("reused", 0) for c in pipeline.metrics_["cutoffs"]] \
        == [0, 3, 3]
    # the run's memo is not kept alive by the fitted model (it only refers to it weakly)
    gc.collect()
    recording = pipeline.parts.forecaster.recording_  # type: ignore[attr-defined]
    assert recording is not None, "the final fit was recorded for no memo: nothing here to check"
    assert recording[0]() is None
