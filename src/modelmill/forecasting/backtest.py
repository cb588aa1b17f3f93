"""Rolling-origin backtesting: at each cut-off a fresh forecaster is fitted on the steps up
to it alone and forecasts the horizon after it; the forecasts are scored against what
happened (Tashman 2000, "Out-of-sample tests of forecasting accuracy").

The cut-offs (``backtest.cutoffs``, each ``backtest.step`` apart, default one horizon) count
back from the end: the latest leaves exactly one horizon after it. A run directory keeps each
finished cut-off's forecasts, so a resumed run skips them.
"""

from __future__ import annotations

import json
import logging
import time
from hashlib import sha256
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from modelmill.config.forecast import SERIES_ID, TIME, VALUE, ForecastConfig
from modelmill.config.io import dump_config
from modelmill.errors import DataError
from modelmill.files import atomic_write_bytes
from modelmill.forecasting.base import FORECAST, LOWER, UPPER, FitContext, ForecastMemo, build_forecaster
from modelmill.forecasting.metrics import ACTUAL, CUTOFF, accuracy, naive_scales
from modelmill.forecasting.panel import Panel, future_steps, horizon_frame

__all__ = ["BacktestResult", "cutoff_times", "run_backtest"]

log = logging.getLogger("modelmill")
_DONE = "forecasts.json"  # a finished cut-off's forecasts, in its folder of the run directory


@dataclass
class BacktestResult:
    """What a backtest found.

    Attributes:
        scored: ``unique_id``, ``ds``, ``cutoff``, ``forecast``, ``lower``, ``upper``, ``actual``.
        metrics: Pooled over every cut-off (:func:`~modelmill.forecasting.metrics.accuracy`).
        per_cutoff: Each cut-off's metrics, its time, the fit's seconds and what the fit chose.
        seconds: Fitting and forecasting, all cut-offs.
    """

    scored: pd.DataFrame
    metrics: dict[str, float]
    per_cutoff: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def cutoff_times(panel: Panel, config: ForecastConfig, *, source: str = "the data") -> list[pd.Timestamp]:
    """The forecast origins, oldest first: the latest one horizon before the end of the
    longest series, the others ``backtest.step`` earlier each.

    Raises:
        DataError: a series holds too few steps before the oldest cut-off to fit on (at least
            one season and one horizon, and two steps).
    """
    horizon, backtest = config.series.horizon, config.backtest
    step = backtest.step or horizon
    offset = panel.offset
    end = panel.frame[TIME].max()
    cutoffs = [end - offset * (horizon + k * step) for k in range(backtest.cutoffs)][::-1]
    needed = max(panel.season + horizon, 2)
    for key, rows in panel.series():
        before = int((rows[TIME] <= cutoffs[0]).sum())
        if before < needed:
            raise DataError(
                f"series {key!r} holds {before} steps before the oldest backtest cut-off ({cutoffs[0]}), and a fit "
                f"needs at least {needed} (a season of {panel.season} and the horizon of {horizon}): {len(rows)} "
                f"steps in all, {backtest.cutoffs} cut-offs {step} steps apart. Fix: a shorter series.horizon, fewer "
                "backtest.cutoffs or a smaller backtest.step, or more history", source=source,
                column=config.series.id or config.series.time)
    return cutoffs


def run_backtest(config: ForecastConfig, panel: Panel, *, run_dir: Path | None = None, resume: bool = False,
                 source: str = "the data", memo: ForecastMemo | None = None) -> BacktestResult:
    """Fit and forecast at every cut-off (each on the past alone) and score the forecasts.
    ``memo``: the run's forecasts, shared with the fits after the backtest (a new one if None)."""
    started = time.perf_counter()
    memo = memo if memo is not None else ForecastMemo()
    scored, per_cutoff, scales = [], [], []
    cutoffs = cutoff_times(panel, config, source=source)
    for index, cutoff in enumerate(cutoffs, start=1):
        folder = run_dir / "backtest" / f"cutoff-{index}" if run_dir else None
        train = panel.up_to(cutoff)
        fingerprint = _fingerprint(config, train, cutoff)
        done = _load_done(folder, fingerprint) if resume and folder else None
        if done is None:
            done = _one_cutoff(config, panel, train, cutoff, FitContext(
                checkpoint_dir=folder, resume=resume, seed=config.training.seed, label=f"cut-off {index} of "
                f"{len(cutoffs)}", memo=memo))
            if folder:
                _save_done(folder, done, fingerprint)
        forecasts, info = done
        scored.append(forecasts)
        scale = naive_scales(train.frame, panel.season)
        scales.append(pd.Series(scale.to_numpy(), index=pd.MultiIndex.from_arrays(
            [scale.index, [cutoff] * len(scale)], names=[SERIES_ID, CUTOFF])))
        metrics = accuracy(forecasts, scales[-1])
        per_cutoff.append({"cutoff": str(cutoff), **{k: round(v, 4) for k, v in metrics.items()}, **info})
        log.info(f"backtest cut-off {index} of {len(cutoffs)} ({cutoff}): MASE {metrics['mase']:.3f}, "
                 f"coverage {metrics['coverage']:.3f}, {info['seconds']:.1f} s")
    stacked = pd.concat(scored, ignore_index=True)
    return BacktestResult(stacked, accuracy(stacked, pd.concat(scales)), per_cutoff,
                          time.perf_counter() - started)


def _one_cutoff(config: ForecastConfig, panel: Panel, train: Panel, cutoff: pd.Timestamp,
                context: FitContext) -> tuple[pd.DataFrame, dict[str, Any]]:
    started = time.perf_counter()
    forecaster = build_forecaster(config).fit(train, context)
    future = horizon_frame(train, _beyond_ends(panel, train, config.series.horizon), config.series.horizon,
                           source="the backtest")
    forecasts = forecaster.forecast(train, future)
    actual = panel.frame[[SERIES_ID, TIME, VALUE]].rename(columns={VALUE: ACTUAL})
    forecasts = forecasts.merge(actual, on=[SERIES_ID, TIME], how="left")
    forecasts = forecasts[forecasts[ACTUAL].notna()]  # a shorter series ends before the horizon does
    forecasts.insert(2, CUTOFF, cutoff)
    return forecasts.reset_index(drop=True), {"seconds": round(time.perf_counter() - started, 2),
                                              "model": forecaster.describe()}


def _beyond_ends(panel: Panel, train: Panel, horizon: int) -> pd.DataFrame:
    """The panel's rows, and for a series that ends before the horizon after the cut-off does,
    its last covariates carried over the missing steps: those steps have no actual value and
    are never scored, but a forecaster is handed the whole horizon of every series."""
    if not panel.future:
        return panel.frame
    extra = []
    for key, last in train.last_times().items():
        rows = panel.frame[panel.frame[SERIES_ID] == key]
        steps = future_steps(last, panel.frequency, horizon)
        missing = steps[~steps.isin(rows[TIME])]
        if len(missing):
            carried = rows.iloc[[-1]][list(panel.future)].to_dict("records")[0]
            extra.append(pd.DataFrame({SERIES_ID: key, TIME: missing, **carried}))
    return pd.concat([panel.frame, *extra], ignore_index=True) if extra else panel.frame


def _fingerprint(config: ForecastConfig, train: Panel, cutoff: pd.Timestamp) -> str:
    """What a cut-off's forecasts depend on: a resumed run reuses them only when it matches."""
    rows = pd.util.hash_pandas_object(train.frame, index=False).to_numpy().tobytes()
    return sha256(dump_config(config).encode() + str(cutoff).encode() + rows).hexdigest()


def _save_done(folder: Path, done: tuple[pd.DataFrame, dict[str, Any]], fingerprint: str) -> None:
    forecasts, info = done
    table = forecasts.assign(**{TIME: forecasts[TIME].astype(str), CUTOFF: forecasts[CUTOFF].astype(str)})
    payload = {"fingerprint": fingerprint, "info": info, "forecasts": table.to_dict(orient="list")}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / _DONE, json.dumps(payload, default=str).encode())


def _load_done(folder: Path, fingerprint: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    path = folder / _DONE
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    if payload.get("fingerprint") != fingerprint:
        log.warning(f"backtest: {folder.name} was fitted on another config or other data; it is fitted again")
        return None
    forecasts = pd.DataFrame(payload["forecasts"])
    forecasts[TIME] = pd.to_datetime(forecasts[TIME])
    forecasts[CUTOFF] = pd.to_datetime(forecasts[CUTOFF])
    forecasts[SERIES_ID] = forecasts[SERIES_ID].astype(str)
    for column in (FORECAST, LOWER, UPPER, ACTUAL):
        forecasts[column] = forecasts[column].astype("float64")
    log.info(f"backtest: {folder.name} finished before; its forecasts are reused")
    return forecasts, dict(payload["info"])
