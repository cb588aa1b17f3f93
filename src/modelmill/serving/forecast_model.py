"""A served forecast: one loaded, verified and warmed ``task: forecast`` version, its
predictor (the fitted forecaster and the kept history of its series) and its request
contract. The server holds it where it holds a :class:`~modelmill.serving.models.ServedModel`
for ``task: predict``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from modelmill.bundle import Bundle
from modelmill.config.serving import ServingConfig
from modelmill.config.forecast import SERIES_ID, TIME
from modelmill.errors import DataError, ModelmillError, ServingError
from modelmill.forecasting.base import FORECAST, LOWER, UPPER
from modelmill.forecasting.panel import ONE_SERIES, future_steps
from modelmill.forecasting.predictor import ForecastPredictor
from modelmill.serving.forecast_contract import ForecastContract, ForecastRequest, build_forecast_contract
from modelmill.serving.problem import Problem, without_paths

__all__ = ["ServedForecaster", "SOURCE"]

SOURCE = "the request"  # where a data error is, in its message
_KEPT_SHOWN = 100  # kept series ids listed by GET /v1/model


@dataclass
class ServedForecaster:
    """One loaded, verified forecast version: its predictor, its request contract and its metadata."""

    task: ClassVar[str] = "forecast"
    LIMITS: ClassVar[tuple[str, ...]] = ("max_records", "max_body_bytes", "timeout_s", "queue_size")

    name: str
    version: str
    predictor: ForecastPredictor
    contract: ForecastContract
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, bundle: Bundle, version: str, serving: ServingConfig) -> ServedForecaster:
        """The version of ``bundle`` (read and verified), with its request contract.

        Raises:
            ServingError: ``serving.max_records`` cannot hold one horizon of future covariates.
        """
        predictor = ForecastPredictor.from_bundle(bundle)
        series = predictor.config.series
        if series.future and series.horizon > serving.max_records:
            raise ServingError(f"serving.max_records is {serving.max_records}, and a forecast sends one record of "
                               f"future covariates per step of the horizon ({series.horizon}). Fix: serve with "
                               f"--max-records {series.horizon} or more")
        contract = build_forecast_contract(series, kept=predictor.series_ids, max_records=serving.max_records,
                                           example=_example(predictor))
        return cls(predictor.config.name, version, predictor, contract, bundle.manifest, bundle.metrics())

    def forecast(self, request: ForecastRequest) -> list[dict[str, Any]]:
        """The forecasts of a checked request, one per series and step; a 422 naming the column,
        the series and the request's records for data the predictor cannot take."""
        frame = self.contract.frame(request)
        series = request.series or ([ONE_SERIES] if not self.contract.series.id and not request.history else [])
        try:
            forecasts = self.predictor.forecast(frame, series=series or None, source=SOURCE)
        except DataError as exc:
            raise data_problem(exc, len(request.history)) from None
        except ModelmillError as exc:
            raise Problem(422, "invalid_series", without_paths(str(exc))[:1000]) from None
        return forecast_records(forecasts, self.contract.series.time, self.contract.series.id)

    def warm_up(self, batch_size: int) -> None:
        """Forecast the example (the first kept series), so the first real request pays no
        first-call costs and a broken bundle fails here (``batch_size``: unused, forecasts do
        not batch)."""
        out = self.forecast(self.contract.request_of(self.contract.adapter.validate_python(self.contract.example)))
        if len(out) != self.predictor.config.series.horizon:
            raise ServingError(f"warm-up returned {len(out)} forecasts for a horizon of "
                               f"{self.predictor.config.series.horizon}")

    def describe(self) -> dict[str, Any]:
        config, history = self.predictor.config, self.predictor.history
        series = config.series
        kept = self.predictor.series_ids
        roles = [(series.time, "time"), *([(series.id, "id")] if series.id else []), (series.target, "target"),
                 *[(c, "future") for c in series.future], *[(c, "static") for c in series.static]]
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "created_at": self.manifest.get("created_at"),
            "modelmill_version": self.manifest.get("modelmill_version"),
            "model_type": config.model.type,
            "inputs": [{"name": name, "role": role} for name, role in roles],
            "series": {"horizon": series.horizon, "frequency": self.predictor.frequency, "season": history.season,
                       "needed_history": self.predictor.forecaster.needed_history(),
                       "kept_steps": int(history.lengths().max()) if kept else 0},
            "kept_series": {"count": len(kept), "ids": kept[:_KEPT_SHOWN]},
            "interval": config.backtest.interval,
            "metrics": self.metrics,
            "example": self.contract.example,
        }


def data_problem(exc: DataError, history: int) -> Problem:
    """The predictor's data error as a 422: the rows it names (counted over the history records,
    then the future records) become the request's own places, ``history[i]`` / ``future[j]``."""
    bare = _bare_message(exc)
    places = [("history", row - 1) if row <= history else ("future", row - 1 - history)
              for row in exc.rows if row >= 1]
    where = [f"column {exc.column!r}"] if exc.column else []
    where += [f"{part}[{index}]" for part, index in places]
    message = f"{', '.join(where)}: {bare}" if where else bare
    details = [{"loc": [part, index, *([exc.column] if exc.column else [])], "msg": bare[:300],
                "type": "invalid_series"} for part, index in places]
    return Problem(422, "invalid_series", without_paths(message)[:1000], details=details)


def _bare_message(exc: DataError) -> str:
    """What was wrong, without the "in SOURCE column 'c' rows …" prefix (rows of the frame)."""
    text = str(exc)
    prefix = str(DataError("", source=exc.source, column=exc.column, rows=exc.rows))
    return text[len(prefix):] if prefix and text.startswith(prefix) else text


def forecast_records(frame: pd.DataFrame, time_column: str, id_column: str | None) -> list[dict[str, Any]]:
    """The predictor's frame as JSON records: the id, the time as ISO 8601 text, then the
    forecast and the interval's bounds (null where a value is not finite)."""
    columns: dict[str, list[Any]] = {}
    if id_column:
        columns[id_column] = frame[id_column].astype(str).tolist()
    columns[time_column] = iso_times(pd.DatetimeIndex(frame[time_column]))
    for name in (FORECAST, LOWER, UPPER):
        columns[name] = [value if math.isfinite(value) else None for value in frame[name].astype(float).tolist()]
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def iso_times(times: pd.DatetimeIndex, time_format: str | None = None) -> list[str]:
    """Times as text: in ``time_format`` when given, else ISO 8601, as dates when every one
    of them is a midnight (daily steps and longer)."""
    if time_format:
        return [str(t) for t in times.strftime(time_format)]
    if len(times) and (times == times.normalize()).all():
        return [t.date().isoformat() for t in times]
    return [t.isoformat() for t in times]


def _example(predictor: ForecastPredictor) -> dict[str, Any]:
    """A request for the horizon of the first kept series, its future covariates held at their
    last values (times written as the training data wrote them, when ``series.time_format``)."""
    series = predictor.config.series
    kept = predictor.series_ids
    if not kept:
        return {}
    rows = predictor.history.frame[predictor.history.frame[SERIES_ID] == kept[0]]
    last = rows.iloc[-1]
    steps = future_steps(pd.Timestamp(last[TIME]), predictor.frequency, series.horizon)
    future = []
    for text in iso_times(steps, series.time_format):
        record: dict[str, Any] = {series.time: text}
        if series.id:
            record[series.id] = kept[0]
        record.update({column: float(last[column]) for column in series.future})
        future.append(record)
    body: dict[str, Any] = {"series": [kept[0]]} if series.id else {}
    if series.future:
        body["future"] = future
    return body
