"""The forecaster contract, and the registry of forecast model types (``model.type``).

A forecaster fits on a :class:`~modelmill.forecasting.panel.Panel` and forecasts the horizon
after the last step of each series of the history it is given, which need not be the history
it was fitted on: a backtest hands it the steps before a cut-off, the service the recent
history a request sends. Its fitted state is plain data (JSON, tensors, its own library's
text format), never pickle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd
import torch

from modelmill.config.forecast import ForecastConfig
from modelmill.forecasting.panel import Panel
from modelmill.registry import Registry

__all__ = ["FORECASTERS", "FORECAST", "LOWER", "UPPER", "FitContext", "ForecastMemo", "Forecaster",
           "ForecasterState", "build_forecaster", "forecast_columns"]

# The columns of a forecast frame, after unique_id and ds: the point forecast (the median where
# the model gives quantiles) and the bounds of the interval of coverage backtest.interval.
FORECAST, LOWER, UPPER = "forecast", "lower", "upper"


def forecast_columns() -> list[str]:
    return [FORECAST, LOWER, UPPER]


@dataclass
class ForecasterState:
    """A fitted forecaster as plain data: ``json`` (numbers, lists, strings), ``tensors``
    (saved as safetensors) and ``files`` (bytes in a format of their own, such as LightGBM's
    text model)."""

    json: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


class ForecastMemo:
    """The forecasts one run has made, by model type, seed and the exact history the model was
    fitted on (its content, hashed), so that the run fits each model type once per history.

    A backtest of ``auto`` needs it: each cut-off scores every candidate on the three horizons
    before it, and with cut-offs a horizon apart, cut-off k's held-out history j is the history
    of cut-off k − j, on which the same candidate was fitted (held out, or as the refit that
    forecast cut-off k − j itself). With the memo a backtest of c cut-offs fits each candidate
    3 + c times, not 4c, and the final fit after it reuses the latest cut-offs' fits too.

    It holds forecasts, never fitted models, and belongs to one run: one config (the forecasts
    of a history depend on the model's settings) and one data set (the covariates of the steps
    after a history are those of that data).
    """

    def __init__(self) -> None:
        self._forecasts: dict[tuple[str, int, str], pd.DataFrame] = {}

    @staticmethod
    def key_of(history: Panel) -> str:
        """The history's content, hashed (its rows in order, its frequency and season)."""
        rows = pd.util.hash_pandas_object(history.frame, index=False).to_numpy().tobytes()
        return sha256(rows + f"{history.frequency}|{history.season}".encode()).hexdigest()

    def get(self, kind: str, seed: int, history_key: str) -> pd.DataFrame | None:
        found = self._forecasts.get((kind, seed, history_key))
        return None if found is None else found.copy()

    def put(self, kind: str, seed: int, history_key: str, forecasts: pd.DataFrame) -> None:
        self._forecasts[(kind, seed, history_key)] = forecasts.copy()


@dataclass
class FitContext:
    """What a fit may use besides the data.

    Attributes:
        checkpoint_dir: Where the shared trainer keeps its checkpoints (None: none kept).
        resume: Continue from the checkpoint there.
        seed: The seed of every random draw of the fit.
        label: What is being fitted, for logs (``cut-off 2 of 3``, ``final``).
        memo: The run's forecasts so far, where a model type is fitted on the same history
            more than once in it (``auto``'s held-out horizons); None: nothing is reused.
    """

    checkpoint_dir: Path | None = None
    resume: bool = False
    seed: int = 0
    label: str = "final"
    memo: ForecastMemo | None = None


class Forecaster(ABC):
    """Base of every forecast model type.

    ``__init__`` only stores the whole config (the model's section, the series, the window
    features, the training settings, the interval's coverage); ``fit`` learns; ``forecast``
    predicts ``config.series.horizon`` steps after the history's last step, per series.
    """

    kind: ClassVar[str]

    def __init__(self, config: ForecastConfig) -> None:
        self.config = config

    @property
    def horizon(self) -> int:
        return self.config.series.horizon

    @property
    def interval(self) -> float:
        return self.config.backtest.interval

    @abstractmethod
    def fit(self, train: Panel, context: FitContext) -> Self:
        """Learn from every step of ``train``."""

    @abstractmethod
    def forecast(self, history: Panel, future: pd.DataFrame) -> pd.DataFrame:
        """The horizon after each series' last step of ``history``.

        Args:
            history: The series to forecast, up to their last known step (at least
                :meth:`needed_history` steps each where the model needs them).
            future: ``unique_id``, ``ds`` and the future covariates, one row per series and
                forecast step (exactly the horizon steps after each series' last step).

        Returns:
            ``unique_id``, ``ds``, ``forecast``, ``lower``, ``upper``: one row per series and step.
        """

    def needed_history(self) -> int:
        """Steps of recent history a forecast reads (a request must send at least this many)."""
        return 1

    def history_to_keep(self) -> int:
        """Steps of each series the bundle keeps (at least ``series.keep``), so that a forecast
        naming a series is the forecast of the fitted model itself (a local model fitted on a
        window of the series needs that whole window)."""
        return self.needed_history()

    @abstractmethod
    def state(self) -> ForecasterState:
        """The fitted state as plain data."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: ForecastConfig, state: ForecasterState) -> Self:
        """A fitted forecaster from :meth:`state`'s output."""

    def describe(self) -> dict[str, Any]:
        """What the fit chose, for the report (the ETS form per series, `auto`'s candidates and weights …)."""
        return {}


FORECASTERS: Registry[type[Forecaster]] = Registry("forecast model type")


def build_forecaster(config: ForecastConfig) -> Forecaster:
    """An unfitted forecaster of ``config.model.type``."""
    return FORECASTERS.get(config.model.type, path="model.type")(config)
