"""``task: forecast`` from raw data to a bundle: read the series, backtest, fit on every
step, report, save; and the fitted pipeline loaded back from a bundle.

    pipeline = ForecastPipeline("examples/forecast/elecdemand.yaml").fit()
    pipeline.save("bundle/")
    load("bundle/").predict("recent.csv")    # the next horizon of each series
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Self, TypeAlias

import pandas as pd

from modelmill.bundle import Bundle, Contents, ModelFiles, sha256, write_contents
from modelmill.bundle.weights import encode_weights
from modelmill.config import ForecastConfig, TaskConfig, dump_config, load_task_config
from modelmill.config.schema import DataConfig
from modelmill.data.image_values import hashable_frame
from modelmill.data.sources import read_table
from modelmill.encryption import Key
from modelmill.errors import ConfigError, ModelError
from modelmill.evaluation.report import render_report
from modelmill.files import atomic_write_bytes
from modelmill.config.forecast import SERIES_ID, TIME, VALUE
from modelmill.forecasting.backtest import BacktestResult, run_backtest
from modelmill.forecasting.base import FitContext, ForecastMemo, build_forecaster
from modelmill.forecasting.metrics import ACTUAL, accuracy, naive_scales
from modelmill.forecasting.panel import Panel, check_history, horizon_frame, read_panel
from modelmill.forecasting.predictor import WEIGHTS_FILE, ForecastPredictor, history_state

__all__ = ["ForecastPipeline", "forecast_from_bundle"]

log = logging.getLogger("modelmill")
Data: TypeAlias = pd.DataFrame | str | Path
_ENCRYPTION = ("encryption is not available for task: forecast yet: its runs and bundles would be written in "
               "clear. Fix: train without --encrypt (or keep the run folder on an encrypted volume)")


class ForecastPipeline:
    """One forecast config, the whole way from raw series to an evaluated bundle."""

    def __init__(self, config: TaskConfig | dict[str, Any] | str | Path, *, base_dir: Path | None = None) -> None:
        loaded = load_task_config(config)
        if not isinstance(loaded, ForecastConfig):
            raise ConfigError(f"a `task: {loaded.task}` config: modelmill.Pipeline runs it", path="task")
        self.config = loaded
        self.base_dir = base_dir or (Path(config).parent if isinstance(config, (str, Path)) else Path.cwd())
        self.predictor_: ForecastPredictor | None = None
        self.backtest_: BacktestResult | None = None
        self.metrics_: dict[str, Any] = {}
        self.plots_: dict[str, bytes] = {}
        self.warnings_: list[str] = []
        self.timings_: dict[str, float] = {}
        self.data_hash_ = ""
        self.source_ = ""
        self.key_: bytes | None = None
        self.result_ = None  # no epochs to summarise: the backtest is the summary (the CLI asks)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        return cls(Path(path))

    # ---------------------------------------------------------------- reading

    def read(self, data: Data | None = None) -> pd.DataFrame:
        """A frame as given, or read from a path/URL, or from ``data.source`` of the config."""
        if isinstance(data, pd.DataFrame):
            return data
        if data is None:
            return read_table(self.config.data, base_dir=self.base_dir)
        return read_table(DataConfig(source=str(data)), base_dir=Path.cwd())

    # ----------------------------------------------------------------- fitting

    def fit(self, data: Data | None = None, *, run_dir: Path | None = None, resume: bool = False,
            key: Key | None = None, evaluate: bool = True) -> Self:
        """Read and check the series, backtest (each cut-off fitted on its past alone), then fit
        on every step. ``evaluate=False`` skips the backtest. A run directory keeps the finished
        cut-offs and the trainer's checkpoints, so ``resume`` continues a killed run."""
        if key is not None:
            raise ConfigError(_ENCRYPTION)
        config, started = self.config, time.perf_counter()
        self.source_ = str(data) if isinstance(data, (str, Path)) else ("the frame" if data is not None
                                                                         else config.data.source)
        frame = self.read(data)
        panel, future = read_panel(frame, config, source=self.source_)
        if len(future):
            self.warnings_.append(f"{len(future)} rows after the series' last known target value were left out of "
                                  "training (rows of future covariates are for forecasts)")
        check_history(panel, config.series.horizon, source=self.source_, what="the horizon")
        self.data_hash_ = sha256(pd.util.hash_pandas_object(hashable_frame(panel.frame), index=False)
                                 .to_numpy().tobytes())
        self.timings_["read"] = time.perf_counter() - started
        checkpoints = run_dir / "checkpoints" if run_dir else None  # where `train --resume` looks for a run
        memo = ForecastMemo()  # the final fit reuses the latest cut-offs' fits where it can
        if evaluate:
            self._backtest(panel, checkpoints, resume, memo)
        started = time.perf_counter()
        forecaster = build_forecaster(config).fit(panel, FitContext(
            checkpoint_dir=checkpoints / "final" if checkpoints else None, resume=resume, seed=config.training.seed,
            memo=memo))
        self.timings_["final fit"] = time.perf_counter() - started
        keep = max(config.series.keep, forecaster.history_to_keep())
        self.predictor_ = ForecastPredictor(config, forecaster, panel.tail(keep))
        self.metrics_["model"] = forecaster.describe()
        log.info(f"forecast: final fit in {self.timings_['final fit']:.1f} s")
        return self

    def _backtest(self, panel: Panel, checkpoints: Path | None, resume: bool, memo: ForecastMemo) -> None:
        result = run_backtest(self.config, panel, run_dir=checkpoints, resume=resume, source=self.source_, memo=memo)
        self.backtest_ = result
        self.timings_["backtest"] = result.seconds
        self.metrics_ = {**result.metrics, "cutoffs": result.per_cutoff}
        if self.config.evaluation.plots:
            from modelmill.forecasting.plots import forecast_plots  # matplotlib: only where a fit reports

            self.plots_ = forecast_plots(result.scored, panel, interval=self.config.backtest.interval,
                                         target=self.config.series.target)

    # -------------------------------------------------------------- predicting

    @property
    def parts(self) -> ForecastPredictor:
        """The fitted forecaster and the kept history."""
        if self.predictor_ is None:
            raise ModelError("this pipeline is not fitted yet; call fit() or modelmill.load() first")
        return self.predictor_

    def forecast(self, frame: pd.DataFrame | None = None, *, series: list[str] | None = None,
                 source: str = "the frame") -> pd.DataFrame:
        """See :meth:`ForecastPredictor.forecast`."""
        return self.parts.forecast(frame, series=series, source=source)

    def predict(self, data: Data) -> pd.DataFrame:
        """The next horizon of every series in ``data`` (history rows, and rows of future
        covariates), or of the kept series its future rows name."""
        source = str(data) if not isinstance(data, pd.DataFrame) else "the frame"
        return self.parts.forecast(self.read(data), source=source)

    def evaluate(self, data: Data, *, out_dir: Path | None = None) -> dict[str, Any]:
        """The fitted model (not refitted) forecasts the latest horizon of every series in
        ``data`` from the steps before it, scored against those steps."""
        source = str(data) if not isinstance(data, pd.DataFrame) else "the frame"
        panel, _ = read_panel(self.read(data), self.config, source=source, frequency=self.parts.frequency)
        horizon = self.config.series.horizon
        check_history(panel, horizon, source=source, what="the horizon")
        lengths = panel.lengths()
        position = panel.frame.groupby(SERIES_ID, sort=False).cumcount()
        history = panel.with_frame(panel.frame[position < panel.frame[SERIES_ID].map(lengths) - horizon]
                                   .reset_index(drop=True))
        forecasts = self.parts.forecaster.forecast(history, horizon_frame(history, panel.frame, horizon,
                                                                          source=source))
        actual = panel.frame.rename(columns={VALUE: ACTUAL})[[SERIES_ID, TIME, ACTUAL]]
        scored = forecasts.merge(actual, on=[SERIES_ID, TIME])
        metrics: dict[str, Any] = accuracy(scored, naive_scales(history.frame, panel.season))
        if out_dir:
            report = self._report(f"{self.config.name}: evaluation on {source}", metrics, {})
            for name, content in {"metrics.json": json.dumps(metrics, indent=2).encode(), "report.html": report}.items():
                atomic_write_bytes(out_dir / name, content)
        return metrics

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path, *, key: Key | None = None) -> Path:
        """Write the bundle directory (atomically, never over an existing one); returns its path."""
        if key is not None:
            raise ConfigError(_ENCRYPTION)
        parts, config = self.parts, self.config
        state = parts.forecaster.state()
        artifacts = dict(state.files)
        if state.tensors:
            artifacts[WEIGHTS_FILE] = encode_weights(state.tensors)
        contents = Contents(
            name=config.name, config_yaml=dump_config(config), input_schema=self._input_schema(),
            features={"forecaster": state.json, "history": history_state(parts.history, len(parts.history.frame))},
            models={"model": ModelFiles(type=config.model.type, runtime="torch", artifacts=artifacts)},
            profile=_profile(parts.history), metrics=self.metrics_, data_sha256=self.data_hash_,
            plots=dict(self.plots_),
            report=self._report(f"{config.name}: backtest report", self.metrics_, self._sections())
            if config.evaluation.report else None)
        return write_contents(Path(path), contents)

    def _input_schema(self) -> dict[str, Any]:
        series = self.config.series
        return {"task": "forecast", "time": series.time, "id": series.id, "target": series.target,
                "future": list(series.future), "static": list(series.static), "horizon": series.horizon,
                "frequency": self.parts.frequency, "series": self.parts.series_ids[:1000]}

    def _sections(self) -> dict[str, Any]:
        sections: dict[str, Any] = {}
        if self.backtest_ is not None:
            sections["Backtest cut-offs (each fitted on the steps before it alone)"] = self.backtest_.per_cutoff
        sections["Model"] = self.metrics_.get("model", {})
        sections["Seconds"] = {k: round(v, 2) for k, v in self.timings_.items()}
        if self.warnings_:
            sections["Warnings"] = self.warnings_
        return sections

    def _report(self, title: str, metrics: dict[str, Any], sections: dict[str, Any]) -> bytes:
        plots = {name.removesuffix(".png"): png for name, png in self.plots_.items()}
        shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
        return render_report(title=title, metrics=shown, plots=plots, sections=sections,
                             config_yaml=dump_config(self.config)).encode("utf-8")


def forecast_from_bundle(bundle: Bundle) -> ForecastPipeline:
    """A fitted forecast pipeline from a bundle already read and verified."""
    pipeline = ForecastPipeline(bundle.task_config(), base_dir=bundle.path)
    pipeline.predictor_ = ForecastPredictor.from_bundle(bundle)
    pipeline.metrics_ = bundle.metrics()
    pipeline.plots_ = bundle.plots()
    return pipeline


def _profile(history: Panel) -> dict[str, Any]:
    """Per series: steps kept, and the target's mean, standard deviation, minimum and maximum."""
    stats = history.frame.groupby(SERIES_ID, sort=False)[VALUE].agg(["count", "mean", "std", "min", "max"])
    return {"series": {str(k): {c: float(v) for c, v in row.items()} for k, row in stats.iterrows()}}

