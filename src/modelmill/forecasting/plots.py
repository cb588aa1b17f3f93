"""The report's forecast-versus-actual plots: the latest backtest cut-off of a few series, the
recent history, the forecast and its interval beside what happened."""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from modelmill.config.forecast import SERIES_ID, TIME, VALUE
from modelmill.forecasting.base import FORECAST, LOWER, UPPER
from modelmill.forecasting.metrics import ACTUAL, CUTOFF
from modelmill.forecasting.panel import Panel

__all__ = ["forecast_plots"]

MAX_SERIES = 4  # series plotted (the report stays small for a table of many series)
CONTEXT_HORIZONS = 3  # history shown before the cut-off, in horizons


def forecast_plots(scored: pd.DataFrame, panel: Panel, *, interval: float, target: str) -> dict[str, bytes]:
    """PNG bytes by file name: one plot per series (the first few), at the latest cut-off."""
    if scored.empty:
        return {}
    latest = scored[scored[CUTOFF] == scored[CUTOFF].max()]
    plots = {}
    for number, (key, rows) in enumerate(latest.groupby(SERIES_ID, sort=False)):
        if number == MAX_SERIES:
            break
        history = panel.frame[panel.frame[SERIES_ID] == key]
        cutoff = rows[CUTOFF].iloc[0]
        before = history[history[TIME] <= cutoff].tail(CONTEXT_HORIZONS * len(rows))
        plots[f"forecast_{number + 1}.png"] = _plot(str(key), before, rows, interval=interval, target=target)
    return plots


def _plot(name: str, before: pd.DataFrame, rows: pd.DataFrame, *, interval: float, target: str) -> bytes:
    figure = Figure(figsize=(9, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(before[TIME], before[VALUE], color="#57606a", linewidth=1, label="history")
    axes.fill_between(rows[TIME], rows[LOWER], rows[UPPER], color="#54aeff", alpha=0.3,
                      label=f"{interval:.0%} interval")
    axes.plot(rows[TIME], rows[FORECAST], color="#0969da", linewidth=1.5, label="forecast")
    axes.plot(rows[TIME], rows[ACTUAL], color="#cf222e", linewidth=1, label="actual")
    axes.set_title(f"{name}: forecast from {rows[CUTOFF].iloc[0]} against what happened", fontsize=10)
    axes.set_ylabel(target)
    axes.legend(fontsize=8, loc="upper left")
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
