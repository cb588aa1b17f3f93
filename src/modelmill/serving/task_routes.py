"""What the route of a task served off the batcher shares with the others (a forecast, a
recommendation): the body read and checked on the event loop, the answer computed on a thread of
its own (:class:`~modelmill.serving.runner.SerialRunner`: ``serving.queue_size`` waiting at most,
503 beyond; 504 past ``serving.timeout_s``), a ``/v1/predict`` that says where to go, and the
OpenAPI document with every error answer. Each task's module says what its answer is."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelmill.serving.guards import api_keys, check_api_key, read_body
from modelmill.serving.openapi import add_errors, model_document
from modelmill.serving.problem import Problem
from modelmill.serving.runner import SerialRunner

if TYPE_CHECKING:
    from modelmill.serving.state import ServerState

__all__ = ["add_task_route", "served_as", "task_document", "task_errors"]


class TaskModel(Protocol):
    """What every served model of a task has: its name, version and request contract."""

    name: str
    version: str
    contract: Any


Served = TypeVar("Served", bound=TaskModel)


def task_errors(*, unprocessable: str, late: str) -> dict[str, str]:
    """The error answers of a task's server, with what makes its requests unprocessable (422)
    and what was late (504)."""
    return {
        "400": "The body is not JSON (or too deeply nested)",
        "401": "Missing or wrong token (admin or API key)",
        "403": "The endpoint is off (its token is unset), or an admin caller is not local",
        "404": "Unknown version",
        "409": "The version failed to load or warm up, or is of another task (the old one keeps serving), or a "
               "swap is running",
        "413": "The body is over the size limit",
        "422": unprocessable,
        "503": "Busy (the queue is full) or shutting down; see Retry-After",
        "504": late,
    }


def served_as(state: ServerState, kind: type[Served]) -> Served:
    """The served model, of the task this server was started for (a reload never changes the
    task: :func:`~modelmill.serving.models.load_served`)."""
    current: Any = state.current
    if not isinstance(current, kind):
        raise Problem(409, "wrong_task", f"this server now serves a `task: {current.task}` model")
    return current


def add_task_route(app: FastAPI, state: ServerState, kind: type[Served], *, path: str, tag: str, summary: str,
                   what: str, answer: Callable[[Served, Any], tuple[dict[str, Any], int]],
                   elsewhere: str) -> Callable[[], None]:
    """``POST path``, answering ``answer(model, checked request)`` → (the body's own keys, the
    predictions it counts for the metrics), and a ``/v1/predict`` answering 404 with
    ``elsewhere``; returns what ends the route's thread at shutdown."""
    settings = state.settings
    keys = api_keys(settings)
    runner: SerialRunner[tuple[dict[str, Any], int]] = SerialRunner(settings, what=what, thread=f"modelmill-{tag}")

    async def route(request: Request) -> JSONResponse:
        if keys:
            check_api_key(request, keys)
        model = served_as(state, kind)
        checked = model.contract.read(await read_body(request, settings.max_body_bytes))
        body, predictions = await runner.run(lambda: answer(model, checked))
        state.metrics.observe_batch(predictions)
        return JSONResponse({"model": model.name, "version": model.version, "request_id": request.state.request_id,
                             **body})

    app.post(path, tags=[tag], summary=summary)(route)

    async def predict() -> None:
        raise Problem(404, "not_found", elsewhere)

    app.post("/v1/predict", include_in_schema=False)(predict)
    return runner.close


def task_document(app: FastAPI, model: TaskModel, *, path: str, name: str, description: str,
                  response_schema: dict[str, Any], answer: str, errors: dict[str, str]) -> dict[str, Any]:
    """The OpenAPI document of a task's server: its route's request and response, the admin
    routes' security, and every error answer."""
    document = model_document(app, version=model.version, description=description, path=path, name=name,
                              request_schema=model.contract.json_schema, example=model.contract.example,
                              response_schema=response_schema, answer=answer)
    paths = document["paths"]
    add_errors(paths, {(path, "post"): ("400", "401", "413", "422", "503", "504"),
                       ("/v1/admin/reload", "post"): ("400", "401", "403", "404", "409", "413", "422"),
                       ("/v1/admin/rollback", "post"): ("401", "403", "409"),
                       ("/readyz", "get"): ("503",)}, errors)
    for admin in ("/v1/admin/reload", "/v1/admin/rollback"):
        paths[admin]["post"]["security"] = [{"adminToken": []}]
    document["components"]["securitySchemes"] = {"adminToken": {"type": "http", "scheme": "bearer"}}
    return document
