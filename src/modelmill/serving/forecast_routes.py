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

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelmill.forecasting.base import FORECAST, LOWER, UPPER
from modelmill.serving.forecast_model import ServedForecaster
from modelmill.serving.guards import api_keys, check_api_key, read_body
from modelmill.serving.openapi import add_errors, model_document
from modelmill.serving.problem import Problem
from modelmill.serving.runner import SerialRunner

if TYPE_CHECKING:
    from modelmill.serving.state import ServerState

__all__ = ["add_forecast_routes", "forecast_document"]

ERRORS = {
    "400": "The body is not JSON (or too deeply nested)",
    "401": "Missing or wrong token (admin or API key)",
    "403": "The endpoint is off (its token is unset), or an admin caller is not local",
    "404": "Unknown version",
    "409": "The version failed to load or warm up, or is of another task (the old one keeps serving), or a "
           "swap is running",
    "413": "The body is over the size limit",
    "422": "The request does not match the input schema (details name each field: a wrong type, an unknown "
           "series, too many records), or the series cannot be forecast (duplicate or irregular steps, too "
           "little history, future covariates missing for the horizon: the message names the column, the "
           "series and the request's records)",
    "503": "Busy (the queue is full) or shutting down; see Retry-After",
    "504": "The forecast was not ready in time",
}
_OPERATION_ERRORS = {
    ("/v1/forecast", "post"): ("400", "401", "413", "422", "503", "504"),
    ("/v1/admin/reload", "post"): ("400", "401", "403", "404", "409", "413", "422"),
    ("/v1/admin/rollback", "post"): ("401", "403", "409"),
    ("/readyz", "get"): ("503",),
}


def add_forecast_routes(app: FastAPI, state: ServerState) -> Callable[[], None]:
    """``POST /v1/forecast`` (and a ``/v1/predict`` that says where to go); what ends the
    forecast thread at shutdown."""
    settings = state.settings
    keys = api_keys(settings)
    runner: SerialRunner[list[dict[str, Any]]] = SerialRunner(settings, what="forecasts", thread="modelmill-forecast")

    @app.post("/v1/forecast", tags=["forecast"], summary="Forecast the next horizon of one or many series")
    async def forecast(request: Request) -> JSONResponse:
        if keys:
            check_api_key(request, keys)
        model = served(state)
        checked = model.contract.read(await read_body(request, settings.max_body_bytes))
        forecasts = await runner.run(lambda: model.forecast(checked))
        state.metrics.observe_batch(len(forecasts))  # one "prediction" per series and step
        return JSONResponse({"model": model.name, "version": model.version, "request_id": request.state.request_id,
                             "interval": model.predictor.config.backtest.interval, "forecasts": forecasts})

    @app.post("/v1/predict", include_in_schema=False)
    async def predict() -> None:
        raise Problem(404, "not_found", "this server forecasts (a `task: forecast` model): POST /v1/forecast; "
                      "GET /v1/model and /docs describe the body")

    return runner.close


def served(state: ServerState) -> ServedForecaster:
    """The served forecast (a reload never changes the task: :func:`~modelmill.serving.models.load_served`)."""
    current = state.current
    if not isinstance(current, ServedForecaster):
        raise Problem(409, "wrong_task", f"this server now serves a `task: {current.task}` model")
    return current


def forecast_document(app: FastAPI, state: ServerState) -> dict[str, Any]:
    """The OpenAPI document of a forecast server: the request and response of ``/v1/forecast``
    in the bundle's own column names, and every error answer."""
    model = served(state)
    document = model_document(
        app, version=model.version, description=f"Forecasts of the modelmill model {model.name!r}, version "
        f"{model.version!r}: the next {model.predictor.config.series.horizon} steps of each series.",
        path="/v1/forecast", name="Forecast", request_schema=model.contract.json_schema,
        example=model.contract.example, response_schema=_response_schema(model),
        answer="One forecast per series and step, with its interval")
    paths = document["paths"]
    add_errors(paths, _OPERATION_ERRORS, ERRORS)
    for path in ("/v1/admin/reload", "/v1/admin/rollback"):
        paths[path]["post"]["security"] = [{"adminToken": []}]
    document["components"]["securitySchemes"] = {"adminToken": {"type": "http", "scheme": "bearer"}}
    return document


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
