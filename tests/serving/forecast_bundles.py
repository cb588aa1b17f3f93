"""Served forecasts for the serving tests: two versions of a small `task: forecast` bundle of
two shops' daily sales (series id, a future covariate, a static one), and a one-series monthly
bundle (no id, no covariates), each fitted by the real forecast pipeline (seasonal naive, so
in a fraction of a second)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.forecasting.pipeline import ForecastPipeline

HORIZON = 7
DAYS = pd.date_range("2024-01-01", periods=60, freq="D")  # the training data: Jan 1 … Feb 29
FIRST_STEP = "2024-03-01"  # the first step after the training data


def shop_frame(offset: float = 0.0, days: pd.DatetimeIndex = DAYS,
               stores: tuple[str, ...] = ("A", "B")) -> pd.DataFrame:
    """Daily sales of the stores, weekly seasonal, with a price (future) and a size (static)."""
    rows = []
    for number, store in enumerate(stores):
        size = float(number + 1)
        for step, day in enumerate(days):
            rows.append({"store": store, "date": day.strftime("%Y-%m-%d"),
                         "sales": round(10 * size + offset + 3 * np.sin(step * 2 * np.pi / 7) + 0.1 * step, 4),
                         "price": float(1 + step % 3), "size": size})
    return pd.DataFrame(rows)


def shop_config(**series: Any) -> dict[str, Any]:
    return {"task": "forecast", "name": "shops", "data": {"source": "sales.csv"},
            "series": {"time": "date", "target": "sales", "id": "store", "horizon": HORIZON, "future": ["price"],
                       "static": ["size"], "keep": 30, **series},
            "model": {"type": "seasonal_naive"}, "backtest": {"cutoffs": 1},
            "evaluation": {"plots": False, "report": False}}


def monthly_frame() -> pd.DataFrame:
    months = pd.date_range("2019-01-01", periods=48, freq="MS")
    return pd.DataFrame({"month": [m.strftime("%Y-%m") for m in months],
                         "visitors": [100 + 20 * np.sin(i * 2 * np.pi / 12) + i for i in range(len(months))]})


def monthly_config() -> dict[str, Any]:
    return {"task": "forecast", "name": "visitors", "data": {"source": "visitors.csv"},
            "series": {"time": "month", "target": "visitors", "horizon": 6, "keep": 24},
            "model": {"type": "seasonal_naive"}, "backtest": {"cutoffs": 1},
            "evaluation": {"plots": False, "report": False}}


def fit_bundle(config: dict[str, Any], frame: pd.DataFrame, target: Path) -> Path:
    return ForecastPipeline(config, base_dir=target.parent).fit(frame).save(target)


@pytest.fixture(scope="session")
def forecast_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with versions 1/ and 2/ of the shops' forecast (2 fitted on sales one higher)."""
    root = tmp_path_factory.mktemp("forecasts")
    fit_bundle(shop_config(), shop_frame(), root / "1")
    fit_bundle(shop_config(), shop_frame(offset=1.0), root / "2")
    return root


@pytest.fixture(scope="session")
def monthly_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_bundle(monthly_config(), monthly_frame(), tmp_path_factory.mktemp("monthly") / "bundle")


def future_records(store: str, start: str = FIRST_STEP, steps: int = HORIZON,
                   price: float = 2.0) -> list[dict[str, Any]]:
    """The future covariates of ``steps`` days from ``start``."""
    days = pd.date_range(start, periods=steps, freq="D")
    return [{"store": store, "date": day.strftime("%Y-%m-%d"), "price": price} for day in days]


def history_records(store: str, days: int = 21, offset: float = 0.0) -> list[dict[str, Any]]:
    """The latest ``days`` of a store's sales, as the request's history."""
    frame = shop_frame(offset=offset, stores=(store,))
    return frame.tail(days).to_dict(orient="records")  # type: ignore[return-value]
