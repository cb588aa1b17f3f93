"""``POST /v1/recommend``: the route of a ``task: recommend`` bundle, and its OpenAPI document.

The body is read under ``serving.max_body_bytes`` and checked by the contract
(:mod:`modelmill.serving.recommend_contract`) on the event loop; the list itself is computed on
a thread of its own (:class:`~modelmill.serving.runner.SerialRunner`: ``serving.queue_size``
waiting at most, 503 beyond; 504 past ``serving.timeout_s``), as forecasts are. A list scores
the whole catalogue exactly, O(items × factors): about 0.2 ms for 4,000 items of 64 factors
(measured on 2 cores; the thread hop adds some 0.04 ms, a whole request over HTTP about 0.9 ms),
but tens of milliseconds for millions of items, which on the event loop would stall every other
request (probes included) meanwhile, and escape the 504 of ``serving.timeout_s``.
Lists do not go through the batcher: each request's known items differ, and at this cost the
batching wait would be longer than the scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelmill.recommending.predictor import Recommendation
from modelmill.serving.guards import api_keys, check_api_key, read_body
from modelmill.serving.openapi import add_errors, model_document
from modelmill.serving.problem import Problem
from modelmill.serving.recommend_model import ServedRecommender, recommendation_json
from modelmill.serving.runner import SerialRunner

if TYPE_CHECKING:
    from modelmill.serving.state import ServerState

__all__ = ["add_recommend_routes", "recommend_document"]

ERRORS = {
    "400": "The body is not JSON (or too deeply nested)",
    "401": "Missing or wrong token (admin or API key)",
    "403": "The endpoint is off (its token is unset), or an admin caller is not local",
    "404": "Unknown version",
    "409": "The version failed to load or warm up, or is of another task (the old one keeps serving), or a "
           "swap is running",
    "413": "The body is over the size limit",
    "422": "The request does not match the input schema (details name each field: no user, a blank id, an id "
           "that is neither a string nor a whole number, k outside 1..serving.max_k, more ids than "
           "serving.max_exclude), or the model refuses the request",
    "503": "Busy (the queue is full) or shutting down; see Retry-After",
    "504": "The list was not ready in time",
}
_OPERATION_ERRORS = {
    ("/v1/recommend", "post"): ("400", "401", "413", "422", "503", "504"),
    ("/v1/admin/reload", "post"): ("400", "401", "403", "404", "409", "413", "422"),
    ("/v1/admin/rollback", "post"): ("401", "403", "409"),
    ("/readyz", "get"): ("503",),
}


def add_recommend_routes(app: FastAPI, state: ServerState) -> Callable[[], None]:
    """``POST /v1/recommend`` (and a ``/v1/predict`` that says where to go); what ends the
    recommendation thread at shutdown."""
    settings = state.settings
    keys = api_keys(settings)
    runner: SerialRunner[Recommendation] = SerialRunner(settings, what="recommendations",
                                                        thread="modelmill-recommend")

    @app.post("/v1/recommend", tags=["recommend"], summary="The top k items for a user")
    async def recommend(request: Request) -> JSONResponse:
        if keys:
            check_api_key(request, keys)
        model = served(state)
        checked = model.contract.read(await read_body(request, settings.max_body_bytes))
        listed = await runner.run(lambda: model.recommend(checked))
        state.metrics.observe_batch(1)  # one "prediction": the user's list
        return JSONResponse({"model": model.name, "version": model.version, "request_id": request.state.request_id,
                             **recommendation_json(listed)})

    @app.post("/v1/predict", include_in_schema=False)
    async def predict() -> None:
        raise Problem(404, "not_found", "this server recommends (a `task: recommend` model): POST /v1/recommend "
                      "with {\"user\": ID, \"k\": N}; GET /v1/model and /docs describe the body")

    return runner.close


def served(state: ServerState) -> ServedRecommender:
    """The served recommender (a reload never changes the task: :func:`~modelmill.serving.models.load_served`)."""
    current: Any = state.current
    if not isinstance(current, ServedRecommender):
        raise Problem(409, "wrong_task", f"this server now serves a `task: {current.task}` model")
    return current


def recommend_document(app: FastAPI, state: ServerState) -> dict[str, Any]:
    """The OpenAPI document of a recommendation server: the request and response of
    ``/v1/recommend``, and every error answer."""
    model = served(state)
    document = model_document(
        app, version=model.version, description=f"Recommendations of the modelmill model {model.name!r}, version "
        f"{model.version!r}: the top k of {len(model.predictor.item_ids)} items for a user, leaving out what the "
        "user is known to have.", path="/v1/recommend", name="Recommend",
        request_schema=model.contract.json_schema, example=model.contract.example,
        response_schema=RESPONSE_SCHEMA, answer="The user's list, best first")
    paths = document["paths"]
    add_errors(paths, _OPERATION_ERRORS, ERRORS)
    for path in ("/v1/admin/reload", "/v1/admin/rollback"):
        paths[path]["post"]["security"] = [{"adminToken": []}]
    document["components"]["securitySchemes"] = {"adminToken": {"type": "http", "scheme": "bearer"}}
    return document


RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "version", "request_id", "user", "items", "known_user", "fallback", "unknown_items"],
    "properties": {
        "model": {"type": "string"},
        "version": {"type": "string"},
        "request_id": {"type": "string"},
        "user": {"type": "string", "description": "The user asked about, as text"},
        "items": {"type": "array", "description": "Best first; fewer than k when the catalogue runs out",
                  "items": {"type": "object", "required": ["item", "score"], "properties": {
                      "item": {"type": "string"},
                      "score": {"anyOf": [{"type": "number"}, {"type": "null"}],
                                "description": "The model's score (the popular fallback: the item's summed "
                                               "interaction weights)"}}}},
        "known_user": {"type": "boolean", "description": "The model knows the user (fitted on, or added by a "
                                                         "refresh)"},
        "fallback": {"anyOf": [{"type": "string", "enum": ["history", "popular"]}, {"type": "null"}],
                     "description": "null: the model ranked the user's list; history: a new user ranked from "
                                    "the items sent; popular: a new user without items, given the most popular"},
        "unknown_items": {"type": "integer", "description": "Ids sent in `items` that are not in the catalogue "
                                                            "(ignored)"},
    },
}
