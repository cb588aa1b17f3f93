"""The FastAPI app of a served model.

Request bodies are read by hand (size-limited before anything is buffered) and validated
by the model's own contract (:mod:`modelmill.serving.schema`), whose JSON Schema is also
the request body of the OpenAPI docs. Every error answer has one shape,
``{"error": {"code", "message", "details"?}, "request_id"}``, and no paths or traces.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from modelmill.config.serving import ServingConfig
from modelmill.errors import ModelError, ModelmillError
from modelmill.serving.feedback import check_token, receive_labels
from modelmill.serving.guards import api_keys, check_admin, check_api_key, read_body
from modelmill.serving.openapi import openapi_for
from modelmill.serving.metrics import multiprocess
from modelmill.serving.multipart import is_multipart, multipart_record
from modelmill.serving.models import ServedModel, explanation_json
from modelmill.serving.problem import Problem, without_paths
from modelmill.serving.runner import SerialRunner
from modelmill.serving.schema import invalid_body, public_errors
from modelmill.serving.state import ServerState
from modelmill.serving.versions import version_order

if TYPE_CHECKING:
    from modelmill.explain import Explanation

log = logging.getLogger("modelmill.serving")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
ROUTES = ("/v1/predict", "/v1/explain", "/v1/feedback", "/v1/forecast", "/v1/recommend", "/v1/model", "/healthz",
          "/readyz", "/metrics", "/v1/admin/reload", "/v1/admin/rollback", "/v1/admin/shadow", "/docs", "/redoc",
          "/openapi.json")


class VersionRequest(BaseModel):
    """Body of ``/v1/admin/reload``: a version name, or nothing for the newest (and of
    ``POST /v1/admin/shadow``, where the name is required)."""

    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(None, max_length=256)


def create_app(state: ServerState) -> FastAPI:
    """The app of ``state``'s model: ``/v1/predict`` (and explain, feedback, shadow) for a
    ``task: predict`` bundle, ``/v1/forecast`` for a ``task: forecast`` one, ``/v1/recommend``
    for a ``task: recommend`` one; the probes, the metrics, ``/v1/model`` and the admin calls
    for all of them."""
    closers: list[Callable[[], None]] = []  # the task routes' own threads, ended at shutdown

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        _drain_on_stop_signals(state)
        tasks = [asyncio.create_task(state.follow_selection(state.selection))] if state.selection else []
        if multiprocess():
            tasks.append(asyncio.create_task(_refresh_gauges(state)))
        gauges = None
        if state.prediction_log is not None:
            from modelmill.serving.drift import DriftGauges

            gauges = DriftGauges(state.prediction_log.store, state.metrics, lambda: state.predicting, state.root.path)
            gauges.start()
        try:
            yield
        finally:
            state.begin_drain()
            for task in tasks:
                task.cancel()
            state.batcher.stop(timeout=state.settings.grace_s)
            for close in closers:
                close()
            shadow = state.shadow_with(None)  # stopped before the log closes the store it writes to
            if shadow is not None:
                await asyncio.to_thread(shadow.stop)
            if gauges is not None:
                await asyncio.to_thread(gauges.close)
            if state.prediction_log is not None:  # what is still in memory goes to the spool
                await asyncio.to_thread(state.prediction_log.close, 10.0)

    # Swagger UI and ReDoc served from the package, not a CDN: the docs pages work on a
    # server without internet access.
    app = FastAPIOffline(title=f"modelmill: {state.current.name}", version=state.current.version,
                         lifespan=lifespan, static_url="/docs/assets")
    app.state.serving = state
    app.openapi = openapi_for(app, state)  # type: ignore[method-assign]
    _add_error_handlers(app)
    app.add_middleware(_Observed, state=state)  # type: ignore[arg-type]
    if isinstance(state.current, ServedModel):
        closers.append(_add_predict_routes(app, state))
    elif state.current.task == "recommend":  # the recommend modules only where a recommender is served
        from modelmill.serving.recommend_routes import add_recommend_routes

        closers.append(add_recommend_routes(app, state))
    else:  # the forecast modules (and the forecasting package) only where a forecast is served
        from modelmill.serving.forecast_routes import add_forecast_routes

        closers.append(add_forecast_routes(app, state))
    _add_common_routes(app, state)
    return app


async def _refresh_gauges(state: ServerState) -> None:
    """With several workers a scrape reads every worker's files: keep this worker's gauges fresh."""
    while True:
        state.metrics.refresh()
        await asyncio.sleep(1.0)


def _drain_on_stop_signals(state: ServerState) -> None:
    """Flip readiness to 503 the moment SIGTERM or SIGINT arrives, then let uvicorn's own
    handler (installed before the app starts, restored after it stops) shut down gracefully."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (a server run in a thread, as in tests)
    for sig in (signal.SIGTERM, signal.SIGINT):
        stop = signal.getsignal(sig)
        if not callable(stop):
            continue

        def drain_then_stop(number: int, frame: Any, stop: Callable[[int, Any], Any] = stop) -> None:
            state.begin_drain()
            stop(number, frame)

        signal.signal(sig, drain_then_stop)


def _add_predict_routes(app: FastAPI, state: ServerState) -> Callable[[], None]:
    """``/v1/predict``, ``/v1/explain``, ``/v1/feedback`` and the shadow's admin calls; what
    ends their threads at shutdown."""
    settings = state.settings
    keys = api_keys(settings)
    explainer = _Explainer(settings)

    @app.post("/v1/predict", tags=["predict"], summary="Predict one or many records")
    async def predict(request: Request) -> JSONResponse:
        request_id = request.state.request_id
        if keys:
            check_api_key(request, keys)
        state.batcher.arriving += 1
        try:
            model = state.predicting
            records = await _read_records(request, model, settings.max_body_bytes)
        finally:
            state.batcher.arriving -= 1
        predictions, used = await state.batcher.predict(model, records, settings.timeout_s)
        if state.prediction_log is not None:
            latency_ms = (time.perf_counter() - request.state.started) * 1000
            try:
                state.prediction_log.submit(request_id, records, predictions, used.name, used.version, latency_ms)
            except Exception:  # logging must never fail a request; the counters show the loss
                log.exception("the prediction log refused a request's records")
        shadow = state.shadow
        if shadow is not None:  # the challenger's turn comes later, on its own thread: never waited for
            shadow.offer(request_id, records)
        return JSONResponse({"model": used.name, "version": used.version, "request_id": request_id,
                             "predictions": predictions})

    @app.post("/v1/explain", tags=["explain"], summary="Why: each input column's share of each record's output")
    async def explain(request: Request) -> JSONResponse:
        if keys:
            check_api_key(request, keys)
        model = state.predicting
        records = await _read_records(request, model, settings.max_body_bytes)
        limit = settings.explain_max_records
        if len(records) > limit:
            raise Problem(422, "too_many_records", f"{len(records)} records to explain; the limit is {limit} "
                          f"per request (serving.explain_max_records). Fix: send at most {limit} records per request")
        explanation = await explainer.explain(model, records)
        return JSONResponse({"model": model.name, "version": model.version, "request_id": request.state.request_id,
                             **explanation_json(explanation)})

    @app.post("/v1/feedback", tags=["feedback"], summary="Labels for earlier predictions, by request id and row")
    async def feedback(request: Request) -> dict[str, Any]:
        check_token(request.headers.get("authorization", ""), settings)
        body = await read_body(request, settings.max_body_bytes)
        return await receive_labels(body, state.prediction_log, state.predicting.predictor.target.schema())

    @app.post("/v1/admin/shadow", tags=["admin"], summary="Shadow the served model with a challenger from .shadow/")
    async def start_shadow(request: Request) -> dict[str, Any]:
        check_admin(request, settings)
        name = await _version_named(request, "expected {\"version\": \"NAME\"}")
        if name is None:
            raise Problem(422, "invalid_request", "expected {\"version\": \"NAME\"}: the challenger's folder "
                          "in .shadow/ of the model folder")
        return await state.change_shadow(name)

    @app.delete("/v1/admin/shadow", tags=["admin"], summary="Stop shadowing")
    async def stop_shadow(request: Request) -> dict[str, Any]:
        check_admin(request, settings)
        return await state.change_shadow(None)

    return explainer.close


def _add_common_routes(app: FastAPI, state: ServerState) -> None:
    """``/v1/model``, the probes, the metrics and the version changes: the same for every task."""
    settings = state.settings

    @app.get("/v1/model", tags=["model"], summary="The served model: metadata, metrics, input schema")
    async def model_info() -> dict[str, Any]:
        limits = settings.model_dump(include=set(state.current.LIMITS))
        broken = [{"version": v, "error": state.broken[v]} for v in sorted(state.broken, key=version_order)]
        registry = state.root.registry_info(state.current.version)  # served from a model registry
        described = {**state.current.describe(), "versions": state.root.versions(), "broken_versions": broken,
                     "version_folder": state.root.single is None and registry is None, "limits": limits,
                     "shadow": None if state.shadow is None else state.shadow.describe()}
        return described if registry is None else {**described, "registry": registry}

    @app.get("/healthz", tags=["probes"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], summary="Readiness: 200 while taking traffic, 503 when draining")
    async def readyz() -> JSONResponse:
        if state.ready:
            return JSONResponse({"status": "ready", "model": state.current.name, "version": state.current.version})
        return JSONResponse({"status": "draining" if state.draining else "not ready"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(state.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/admin/reload", tags=["admin"], summary="Serve the newest version, or a named one")
    async def reload(request: Request) -> dict[str, Any]:
        check_admin(request, settings)
        version = await _version_named(request, "expected {\"version\": \"NAME\"} or an empty body")
        return await state.reload(version)

    @app.post("/v1/admin/rollback", tags=["admin"], summary="Serve the previous version again")
    async def rollback(request: Request) -> dict[str, Any]:
        check_admin(request, settings)
        return await state.rollback()


async def _read_records(request: Request, model: ServedModel, limit: int) -> list[dict[str, Any]]:
    """The records of a predict or explain request: the body read under ``limit`` bytes (JSON,
    or one record as a multipart form) and validated by the model's contract; 400 when it
    is not JSON, 422 with each wrong field's path when it does not match."""
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type")
    try:
        if is_multipart(content_type):  # one record from a form or curl -F: files as uploads
            record = multipart_record(body, content_type or "", model.contract.form_values)
            payload = model.contract.adapter.validate_python(record)
        else:
            payload = model.contract.adapter.validate_json(body)
    except ValidationError as exc:
        raise invalid_body(exc, "the request does not match the model's input schema (GET /v1/model lists "
                           "it)") from None
    records: list[dict[str, Any]] = payload["instances"]
    return records


class _Explainer:
    """Explanations on a thread of their own (:class:`SerialRunner`: at most ``queue_size``
    waiting, 504 past ``timeout_s``), the model thread batching predictions meanwhile."""

    def __init__(self, settings: ServingConfig) -> None:
        self.runner: SerialRunner[Explanation] = SerialRunner(settings, what="explanations",
                                                              thread="modelmill-explain")
        self.max_steps = settings.explain_max_steps

    async def explain(self, model: ServedModel, records: list[dict[str, Any]]) -> Explanation:
        return await self.runner.run(lambda: _explain(model, records, self.max_steps))

    def close(self) -> None:
        self.runner.close()


def _explain(model: ServedModel, records: list[dict[str, Any]], max_steps: int) -> Explanation:
    """One explanation on the explain thread: a model without an attribution method is a 409,
    data it cannot take a 422, each with the message."""
    try:
        return model.explain(records, max_steps=max_steps)
    except ModelError as exc:
        raise Problem(409, "not_explainable", without_paths(str(exc))[:1000]) from None
    except ModelmillError as exc:
        raise Problem(422, "invalid_record", without_paths(str(exc))[:1000]) from None


async def _version_named(request: Request, expected: str) -> str | None:
    """The version an admin call's body names (``{"version": NAME}``), None for an empty body."""
    body = await read_body(request, 4096)
    try:
        return VersionRequest.model_validate_json(body or b"{}").version
    except ValidationError as exc:
        _, details = public_errors(exc.errors(include_url=False, include_input=False, include_context=False))
        raise Problem(422, "invalid_request", expected, details=details) from None


def _add_error_handlers(app: FastAPI) -> None:
    def answer(request: Request, problem: Problem) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "")
        return JSONResponse(problem.body(request_id), status_code=problem.status, headers=problem.headers)

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return answer(request, exc)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        problem = Problem(exc.status_code, code, str(exc.detail)[:200], headers=dict(exc.headers or {}))
        return answer(request, problem)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        _, details = public_errors(list(exc.errors()))
        return answer(request, Problem(422, "invalid_request", "the request is not valid", details=details))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return answer(request, Problem(500, "internal", "internal error; the server log has the details"))


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Observed:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): a request id for every
    request (echoed in ``X-Request-ID``), and the status and latency of every answer."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: ServerState) -> None:
        self.app = app
        self.metrics = state.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.fullmatch(given) else new_request_id()
        scope.setdefault("state", {}).update(request_id=request_id, started=started)
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        status, answered = 500, False

        async def observed_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception as exc:
            # answered here rather than by Starlette's outermost handler, which re-raises after its
            # answer: uvicorn then closes the kept-alive connection and the client's next request on
            # it fails with "connection reset"
            if answered:
                raise
            log.error("internal error on %s %s", scope.get("method"), path, exc_info=exc)
            body = json.dumps(Problem(500, "internal", "internal error; the server log has the details")
                              .body(request_id)).encode()
            await observed_send({"type": "http.response.start", "status": 500,
                                 "headers": [(b"content-type", b"application/json"),
                                             (b"content-length", str(len(body)).encode())]})
            await observed_send({"type": "http.response.body", "body": body})
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def new_request_id() -> str:
    """32 hex digits: the time in nanoseconds, then 64 random bits. Ids that grow with time
    sort as the requests came, and the prediction log's index on them grows at its end
    instead of at random places (a random id made each insert touch a random page of an
    ever larger index)."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None
