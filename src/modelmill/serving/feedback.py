"""``POST /v1/feedback``: labels that arrive after the prediction, written to the prediction
log. It has its own token (labels drive retraining: whoever can reach the port must not be
able to poison them), is off while that token is unset, and answers each label on its own.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelmill.config.serving import ServingConfig
from modelmill.serving.problem import Problem
from modelmill.serving.schema import public_errors

if TYPE_CHECKING:
    from modelmill.monitoring import PredictionLog

log = logging.getLogger("modelmill.serving")
MAX_LABELS = 10_000
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class LabelIn(BaseModel):
    """One label: by ``request_id`` and ``row`` (the prediction's), or by ``key`` (the value of
    the record key column, serving.log.key_column)."""

    model_config = ConfigDict(extra="forbid")
    request_id: Annotated[str, Field(pattern=REQUEST_ID_PATTERN)] | None = None
    row: Annotated[int, Field(ge=0)] = 0
    key: str | int | None = Field(None, description="The record key column's value.")
    value: Any = Field(description="The true value of the target.")

    @model_validator(mode="after")
    def _one_way(self) -> LabelIn:
        if (self.request_id is None) == (self.key is None):
            raise ValueError("give either request_id (and row) or key")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[LabelIn] = Field(min_length=1, max_length=MAX_LABELS)


def check_token(authorization: str, settings: ServingConfig) -> None:
    token = os.environ.get(settings.log.feedback_token_env, "")
    if not token:
        raise Problem(403, "feedback_disabled", f"feedback is off: start the server with the environment "
                      f"variable {settings.log.feedback_token_env} set to a secret token")
    given = authorization.removeprefix("Bearer ").strip()
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise Problem(401, "unauthorized", "missing or wrong feedback token: send 'Authorization: Bearer TOKEN'",
                      headers={"WWW-Authenticate": "Bearer"})


async def receive_labels(body: bytes, prediction_log: PredictionLog | None, target: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import exc as db_errors

    from modelmill.monitoring.labels import Label, check_label, store_labels
    from modelmill.monitoring.store import database_message

    if prediction_log is None:
        raise Problem(409, "no_log", "this server keeps no prediction log, so labels cannot join anything. "
                      "Fix: serve with --log URL")
    try:
        request = FeedbackRequest.model_validate_json(body)
    except ValidationError as exc:
        kind, details = public_errors(exc.errors(include_url=False, include_input=False, include_context=False))
        raise Problem(400 if kind == "invalid_json" else 422, kind, "expected {\"labels\": [{\"request_id\": "
                      "\"…\", \"row\": 0, \"value\": …}]}", details=details) from None
    details = []
    labels: list[Label] = []
    encoder = prediction_log.encoder
    for i, given in enumerate(request.labels):
        try:
            value = check_label(target, given.value)
        except ValueError as exc:
            details.append({"loc": ["labels", i, "value"], "msg": str(exc), "type": "label_type"})
            continue
        if given.key is not None and encoder.settings.key_column is None:
            details.append({"loc": ["labels", i, "key"], "msg": "labels by key need serving.log.key_column "
                            "(the input column that identifies a record)", "type": "no_key_column"})
            continue
        key = None if given.key is None else encoder.lookup_key(given.key)
        labels.append(Label(value, given.request_id, given.row if given.request_id else None, key))
    if details:
        raise Problem(422, "invalid_labels", "some labels do not fit the model's target; nothing was stored",
                      details=details[:20])
    try:
        results = await asyncio.to_thread(store_labels, prediction_log.store, labels, encoder.settings.sample)
    except db_errors.SQLAlchemyError as error:
        log.warning("feedback: the prediction store %s cannot be written: %s", prediction_log.store.label,
                    database_message(error))
        raise Problem(503, "log_unavailable", "the prediction log cannot be written now; retry later",
                      headers={"Retry-After": "5"}) from None
    for i, result in enumerate(results):
        result["index"] = i
    return {"stored": sum(1 for r in results if r["status"] == "stored"), "results": results}
