"""The OpenAPI document: FastAPI's, with the served model's real request and response
schemas (field names, types, allowed categories) and every error answer filled in."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from modelmill.explain import METHODS
from modelmill.predictor import prediction_columns
from modelmill.serving.feedback import FeedbackRequest
from modelmill.serving.models import ServedModel

if TYPE_CHECKING:
    from modelmill.serving.state import ServerState

PROBLEM = {
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"loc": {"type": "array", "items": {"anyOf": [{"type": "string"},
                                                                                {"type": "integer"}]}},
                                   "msg": {"type": "string"}, "type": {"type": "string"}}}},
            },
        },
        "request_id": {"type": "string"},
    },
}
FEEDBACK_RESPONSE = {
    "type": "object",
    "required": ["stored", "results"],
    "properties": {
        "stored": {"type": "integer"},
        "results": {"type": "array", "items": {"type": "object", "required": ["index", "status"], "properties": {
            "index": {"type": "integer"}, "status": {"enum": ["stored", "unknown", "sampled_out"]},
            "records": {"type": "integer"}, "message": {"type": "string"}}}},
    },
}
ERRORS = {
    "400": "The body is not JSON (or too deeply nested)",
    "401": "Missing or wrong token (admin, feedback or API key)",
    "403": "The endpoint is off (its token is unset), or an admin caller is not local",
    "404": "Unknown version",
    "409": "The version failed to load or warm up (the old one keeps serving), a swap is running, "
           "(feedback, shadow) the server keeps no prediction log, (shadow) the challenger is another model, "
           "or (explain) the served model has no attribution method of its own (an ONNX graph)",
    "413": "The body is over the size limit",
    "422": "The request does not match the input schema (details name each field), or (explain) it has "
           "more records than serving.explain_max_records",
    "503": "Busy (the queue is full), shutting down, or (feedback) the log's store is down; see Retry-After",
    "504": "The model did not answer in time",
}
RELOAD_REQUEST = {"required": False, "content": {"application/json": {
    "schema": {"type": "object", "additionalProperties": False,
               "properties": {"version": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "null"}]}}}}}}
_OPERATION_ERRORS = {
    ("/v1/predict", "post"): ("400", "401", "413", "422", "503", "504"),
    ("/v1/explain", "post"): ("400", "401", "409", "413", "422", "503", "504"),
    ("/v1/feedback", "post"): ("400", "401", "403", "409", "413", "422", "503"),
    ("/v1/admin/reload", "post"): ("400", "401", "403", "404", "409", "413", "422"),
    ("/v1/admin/rollback", "post"): ("401", "403", "409"),
    ("/v1/admin/shadow", "post"): ("400", "401", "403", "404", "409", "413", "422"),
    ("/v1/admin/shadow", "delete"): ("401", "403", "409"),
    ("/readyz", "get"): ("503",),
}


def openapi_for(app: FastAPI, state: ServerState) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: the document of the version being served, built once per version."""
    built: dict[str, dict[str, Any]] = {}

    def document() -> dict[str, Any]:
        version = state.current.version
        if version not in built:
            built.clear()
            if isinstance(state.current, ServedModel):
                built[version] = _document(app, state)
            elif state.current.task == "recommend":
                from modelmill.serving.recommend_routes import recommend_document

                built[version] = recommend_document(app, state)
            else:
                from modelmill.serving.forecast_routes import forecast_document

                built[version] = forecast_document(app, state)
        return built[version]

    return document


def model_document(app: FastAPI, *, version: str, description: str, path: str, name: str,
                   request_schema: dict[str, Any], example: Any, response_schema: dict[str, Any],
                   answer: str) -> dict[str, Any]:
    """The OpenAPI document every server starts from: the model's operation at ``path`` with its
    request (``<name>Request``, the model's own schema) and response (``<name>Response``), the
    error shape, and the reload body."""
    document = get_openapi(title=app.title, version=version, routes=app.routes, description=description)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    request = copy.deepcopy(request_schema)
    schemas.update(request.pop("$defs", {}))
    schemas[f"{name}Request"] = request
    schemas[f"{name}Response"] = response_schema
    schemas["Problem"] = PROBLEM
    operation = document["paths"][path]["post"]
    operation["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{name}Request"}, "example": example}}}
    operation["responses"]["200"] = {"description": answer, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{name}Response"}}}}
    document["paths"]["/v1/admin/reload"]["post"]["requestBody"] = RELOAD_REQUEST
    return document


def _document(app: FastAPI, state: ServerState) -> dict[str, Any]:
    model = state.predicting
    document = model_document(
        app, version=model.version, description=f"Predictions of the modelmill model {model.name!r}, version "
        f"{model.version!r}. The request schema is the model's own input schema.", path="/v1/predict",
        name="Predict", request_schema=model.contract.json_schema, example=model.contract.example,
        response_schema=_response_schema(state), answer="One prediction per record")
    schemas, paths = document["components"]["schemas"], document["paths"]
    request = schemas["PredictRequest"]
    schemas["ExplainRequest"] = _explain_request(request, min(state.settings.explain_max_records,
                                                              state.settings.max_records))
    schemas["ExplainResponse"] = _explain_response(model.contract.columns)
    paths["/v1/explain"]["post"]["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ExplainRequest"}, "example": model.contract.example}}}
    paths["/v1/explain"]["post"]["responses"]["200"] = {"description": "Each record's output, split among its "
        "input columns", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExplainResponse"}}}}
    paths["/v1/admin/shadow"]["post"]["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "additionalProperties": False, "required": ["version"],
                   "properties": {"version": {"type": "string", "maxLength": 256}}},
        "example": {"version": "challenger"}}}}
    schemas["FeedbackRequest"] = FeedbackRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schemas["FeedbackRequest"].pop("$defs", {}))
    paths["/v1/feedback"]["post"]["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/FeedbackRequest"},
        "example": {"labels": [{"request_id": "3f2a9c", "row": 0, "value": _example_label(state)}]}}}}
    paths["/v1/feedback"]["post"]["security"] = [{"feedbackToken": []}]
    paths["/v1/feedback"]["post"]["responses"]["200"] = {"description": "One result per label: stored, "
        "unknown or sampled_out", "content": {"application/json": {"schema": FEEDBACK_RESPONSE}}}
    add_errors(paths, _OPERATION_ERRORS, ERRORS)
    for path, method in (("/v1/admin/reload", "post"), ("/v1/admin/rollback", "post"),
                         ("/v1/admin/shadow", "post"), ("/v1/admin/shadow", "delete")):
        paths[path][method]["security"] = [{"adminToken": []}]
    document["components"]["securitySchemes"] = {"adminToken": {"type": "http", "scheme": "bearer"},
                                                  "feedbackToken": {"type": "http", "scheme": "bearer"}}
    return document


def add_errors(paths: dict[str, Any], operations: dict[tuple[str, str], tuple[str, ...]],
               descriptions: dict[str, str]) -> None:
    """Each operation's error answers, in the one error shape (``Problem``)."""
    for (path, method), codes in operations.items():
        responses = paths[path][method]["responses"]
        for code in codes:
            responses[code] = {"description": descriptions[code],
                               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _explain_request(predict: dict[str, Any], max_records: int) -> dict[str, Any]:
    """``PredictRequest`` with fewer records: what ``POST /v1/explain`` takes."""
    schema = copy.deepcopy(predict)
    schema.setdefault("properties", {}).setdefault("instances", {})["maxItems"] = max_records
    schema["title"] = "ExplainRequest"
    return schema


def _explain_response(columns: list[str]) -> dict[str, Any]:
    number = {"anyOf": [{"type": "number"}, {"type": "null"}]}  # null: a value JSON cannot hold (NaN)
    explanation = {
        "type": "object",
        "required": ["explained", "output", "baseline", "gap", "method", "steps", "attributions"],
        "properties": {
            "explained": {"type": "string", "description": "Which raw output: 'logit of <class>', 'score of "
                          "<class>' or 'standardised <target>'"},
            "output": number, "baseline": number,
            "gap": {**number, "description": "|Σ attributions − (output − baseline)|"},
            "method": {"enum": list(METHODS)},
            "steps": {"anyOf": [{"type": "integer"}, {"type": "null"}],
                      "description": "Integrated Gradients' steps or the column orders sampled; null for TreeSHAP"},
            "attributions": {"type": "object", "properties": {column: number for column in columns},
                             "required": list(columns), "additionalProperties": False},
        },
    }
    return {
        "type": "object",
        "required": ["model", "version", "request_id", "baseline_record", "explanations"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "request_id": {"type": "string"},
            "baseline_record": {"anyOf": [{"type": "object"}, {"type": "null"}], "description": "The typical "
                                "record the outputs are measured from (null for TreeSHAP: the trees' expected value)"},
            "explanations": {"type": "array", "items": explanation},
        },
    }


def _example_label(state: ServerState) -> Any:
    classes = state.predicting.predictor.target.class_names
    return classes[0] if classes else 1.0


def _response_schema(state: ServerState) -> dict[str, Any]:
    target = state.predicting.predictor.target
    classes = target.class_names if target.task != "number" else []
    key, keys = prediction_columns(target.name, classes)
    # a number target predicts a number (or null); a class label may be any JSON value
    properties: dict[str, Any] = {key: {"anyOf": [{"type": "number"}, {"type": "null"}]}
                                  if target.task == "number" else {}}
    properties.update({name: {"type": "number", "minimum": 0, "maximum": 1} for name in keys})
    return {
        "type": "object",
        "required": ["model", "version", "request_id", "predictions"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "request_id": {"type": "string"},
            "predictions": {"type": "array", "items": {"type": "object", "properties": properties,
                                                       "required": list(properties)}},
        },
    }
