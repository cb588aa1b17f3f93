"""``POST /v1/forecast``: the route of a ``task: forecast`` bundle, and its OpenAPI document.

The body is read under ``serving.max_body_bytes`` and checked by the forecast's contract
(:mod:`modelmill.serving.forecast_contract`) on the event loop; the forecast itself runs on a
thread of its own (:class:`~modelmill.serving.runner.SerialRunner`: ``serving.queue_size``
waiting at most, 503 beyond; 504 past ``serving.timeout_s``). Forecasts do not go through the
batcher: a request's series are forecast together, and two requests' histories cannot share a
model call (the same series id may mean different recent values in each).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from modelmill.forecasting.base import FORECAST, LOWER, UPPER
from modelmill.serving.forecast_model import ServedForecaster
from modelmill.serving.task_routes import add_task_route, served_as, task_document, task_errors

if TYPE_CHECKING:
    from modelmill.serving.state import ServerState

__all__ = ["add_forecast_routes", "forecast_document"]

ERRORS = task_errors(
    unprocessable="The request does not match the input schema (details name each field: a wrong type, an "
    "unknown series, too many records), or the series cannot be forecast (duplicate or irregular steps, too "
    "little history, future covariates missing for the horizon: the message names the column, the series and "
    "the request's records)",
    late="The forecast was not ready in time")


def add_forecast_routes(app: FastAPI, state: ServerState) -> Callable[[], None]:
    """``POST /v1/forecast`` (and a ``/v1/predict`` that says where to go); what ends the
    forecast thread at shutdown."""

    def answer(model: ServedForecaster, checked: Any) -> tuple[dict[str, Any], int]:
        forecasts = model.forecast(checked)
        # one "prediction" per series and step
        return {"interval": model.predictor.config.backtest.interval, "forecasts": forecasts}, len(forecasts)

    return add_task_route(app, state, ServedForecaster, path="/v1/forecast", tag="forecast",
                          summary="Forecast the next horizon of one or many series", what="forecasts", answer=answer,
                          elsewhere="this server forecasts (a `task: forecast` model): POST /v1/forecast; GET "
                          "/v1/model and /docs describe the body")


def forecast_document(app: FastAPI, state: ServerState) -> dict[str, Any]:
    """The OpenAPI document of a forecast server: the request and response of ``/v1/forecast``
    in the bundle's own column names, and every error answer."""
    model = served_as(state, ServedForecaster)
    return task_document(
        app, model, path="/v1/forecast", name="Forecast", description=f"Forecasts of the modelmill model "
        f"{model.name!r}, version {model.version!r}: the next {model.predictor.config.series.horizon} steps of each "
        "series.", response_schema=_response_schema(model), answer="One forecast per series and step, with its "
        "interval", errors=ERRORS)


def _response_schema(model: ServedForecaster) -> dict[str, Any]:
    series = model.predictor.config.series
    number = {"anyOf": [{"type": "number"}, {"type": "null"}]}  # null: a value JSON cannot hold (NaN)
    properties: dict[str, Any] = {}
    if series.id:
        properties[series.id] = {"type": "string", "description": "The series"}
    properties[series.time] = {"type": "string", "description": "The forecast step, ISO 8601"}
    properties[FORECAST] = {**number, "description": "The point forecast"}
    properties[LOWER] = {**number, "description": "The interval's lower bound"}
    properties[UPPER] = {**number, "description": "The interval's upper bound"}
    return {
        "type": "object",
        "required": ["model", "version", "request_id", "interval", "forecasts"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "request_id": {"type": "string"},
            "interval": {"type": "number", "description": "The intervals' coverage (0.8: the 10% and 90% quantiles)"},
            "forecasts": {"type": "array", "items": {"type": "object", "properties": properties,
                                                     "required": list(properties)}},
        },
    }
