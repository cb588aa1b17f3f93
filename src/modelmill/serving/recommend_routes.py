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

from fastapi import FastAPI

from modelmill.serving.recommend_model import ServedRecommender, recommendation_json
from modelmill.serving.task_routes import add_task_route, served_as, task_document, task_errors

if TYPE_CHECKING:
    from modelmill.serving.state import ServerState

__all__ = ["RESPONSE_SCHEMA", "add_recommend_routes", "recommend_document"]

ERRORS = task_errors(
    unprocessable="The request does not match the input schema (details name each field: no user, a blank id, "
    "an id that is neither a string nor a whole number, k outside 1..serving.max_k, more ids than "
    "serving.max_exclude), or the model refuses the request",
    late="The list was not ready in time")


def add_recommend_routes(app: FastAPI, state: ServerState) -> Callable[[], None]:
    """``POST /v1/recommend`` (and a ``/v1/predict`` that says where to go); what ends the
    recommendation thread at shutdown."""

    def answer(model: ServedRecommender, checked: Any) -> tuple[dict[str, Any], int]:
        return recommendation_json(model.recommend(checked)), 1  # one "prediction": the user's list

    return add_task_route(app, state, ServedRecommender, path="/v1/recommend", tag="recommend",
                          summary="The top k items for a user", what="recommendations", answer=answer,
                          elsewhere="this server recommends (a `task: recommend` model): POST /v1/recommend with "
                          "{\"user\": ID, \"k\": N}; GET /v1/model and /docs describe the body")


def recommend_document(app: FastAPI, state: ServerState) -> dict[str, Any]:
    """The OpenAPI document of a recommendation server: the request and response of
    ``/v1/recommend``, and every error answer."""
    model = served_as(state, ServedRecommender)
    return task_document(
        app, model, path="/v1/recommend", name="Recommend", description=f"Recommendations of the modelmill model "
        f"{model.name!r}, version {model.version!r}: the top k of {len(model.predictor.item_ids)} items for a user, "
        "leaving out what the user is known to have.", response_schema=RESPONSE_SCHEMA,
        answer="The user's list, best first", errors=ERRORS)


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
