"""The request contract of a served forecast, built from the bundle's ``series:`` config.

``POST /v1/forecast`` takes the user's own column names, typed: recent ``history`` (the time,
the series id where the config has one, the target, the future and static covariates), or the
ids of ``series`` whose history the bundle keeps, or both; and the ``future`` covariates of
every forecast step when the config has future covariates::

    {"history": [{"store": "A", "date": "2024-02-28", "sales": 12.5, "price": 1.0, "size": 2.0}, …],
     "future":  [{"store": "A", "date": "2024-03-01", "price": 1.5}, …]}
    {"series": ["A", "B"], "future": […]}

One pydantic ``TypeAdapter`` checks the raw bytes (pydantic-core parses the JSON, so NaN, deep
nesting and wrong types are caught with the field's path) and its JSON Schema is the request
body of the OpenAPI docs, so the docs and the checks cannot differ (as
:mod:`modelmill.serving.schema` does for predictions). What only the series can tell (a
duplicate or missing step, a history too short, a missing covariate) the predictor checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pandas as pd
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, WithJsonSchema
from typing_extensions import NotRequired, TypedDict

from modelmill.config.forecast import SeriesConfig
from modelmill.errors import did_you_mean
from modelmill.features.request import ENUM_LIMIT
from modelmill.serving.schema import invalid_body

__all__ = ["ForecastContract", "ForecastRequest", "build_forecast_contract"]

TIME_TEXT = 64  # characters of a time value ("2019-07-01T00:00:00.000000+00:00" is 32)
ID_TEXT = 256  # characters of a series id
_INT64 = 2 ** 63


@dataclass(frozen=True)
class ForecastRequest:
    """A checked ``POST /v1/forecast`` body: records keyed by the user's column names."""

    history: list[dict[str, Any]]
    series: list[str]
    future: list[dict[str, Any]]


@dataclass(frozen=True)
class ForecastContract:
    """What ``POST /v1/forecast`` accepts for one model, and an example of it.

    Attributes:
        series: The config's ``series:`` section (the column names and their roles).
        adapter: Validates a raw body.
        json_schema: The body's JSON Schema (``$defs`` referenced as ``#/components/schemas/…``).
        example: A valid body (forecasts from the kept history of the first series).
    """

    series: SeriesConfig
    adapter: TypeAdapter[Any]
    json_schema: dict[str, Any]
    example: dict[str, Any]

    @property
    def columns(self) -> list[str]:
        """The request's columns, in the order of the predictor's frame."""
        series = self.series
        return [*([series.id] if series.id else []), series.time, series.target, *series.future, *series.static]

    def read(self, body: bytes) -> ForecastRequest:
        """The body checked: 400 when it is not JSON, 422 with each wrong field's path."""
        try:
            payload = self.adapter.validate_json(body)
        except ValidationError as exc:
            raise invalid_body(exc, "the request does not match the forecast's input schema (GET /v1/model and "
                               "/openapi.json describe it)") from None
        return self.request_of(payload)

    def request_of(self, payload: dict[str, Any]) -> ForecastRequest:
        return ForecastRequest(list(payload.get("history", [])), list(payload.get("series", [])),
                               list(payload.get("future", [])))

    def frame(self, request: ForecastRequest) -> pd.DataFrame | None:
        """The history records, then the future records (target and static covariates empty),
        as the table the predictor reads; None when there are neither."""
        rows = request.history + request.future
        if not rows:
            return None
        return pd.DataFrame({column: [row.get(column, float("nan")) for row in rows] for column in self.columns})


def build_forecast_contract(series: SeriesConfig, *, kept: list[str], max_records: int,
                            example: dict[str, Any]) -> ForecastContract:
    """The request contract of a forecast of ``series`` (``kept``: the ids whose history the
    bundle keeps; ``max_records``: history and future records together, at most)."""
    time_type = Annotated[str, Field(min_length=1, max_length=TIME_TEXT, description=f"The time column "
                          f"{series.time!r}: a timestamp or date (ISO 8601), a month (2019-01, 2019 Jan), a quarter "
                          "(2019 Q3) or an ISO week (2019 W07), as in training")]
    number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
    history: dict[str, Any] = {series.time: time_type, series.target: number}
    future: dict[str, Any] = {series.time: time_type}
    if series.id:
        history[series.id] = future[series.id] = _id_type(series.id)
    history.update({column: number for column in [*series.future, *series.static]})
    future.update({column: number for column in series.future})
    records: Any = list[_record("HistoryRecord", history)]  # type: ignore[misc]
    fields: dict[str, Any] = {"history": NotRequired[Annotated[records, Field(min_length=1, max_length=max_records)]]}
    if series.id:
        ids: Any = list[_kept_id(series.id, kept)]  # type: ignore[misc]
        fields["series"] = NotRequired[Annotated[ids, Field(min_length=1, max_length=max_records),
                                                 AfterValidator(_unique)]]
    if series.future:
        steps: Any = list[_record("FutureRecord", future)]  # type: ignore[misc]
        fields["future"] = NotRequired[Annotated[steps, Field(max_length=max_records)]]
    body = _record("ForecastRequest", fields)
    checked: Any = Annotated[body, AfterValidator(_whole(series, max_records))]
    adapter: TypeAdapter[Any] = TypeAdapter(checked)
    json_schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    json_schema["description"] = _describe(series, max_records)
    adapter.validate_python(example)  # the docs' example is itself a valid request
    return ForecastContract(series, adapter, json_schema, example)


def _record(name: str, fields: dict[str, Any]) -> Any:
    record = TypedDict(name, fields)  # type: ignore[misc]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return record


def _id_text(value: Any) -> Any:
    """Ids are text; an integer id (as the data may hold them) is taken as its digits."""
    if isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64:
        return str(value)
    return value


def _id_type(column: str) -> Any:
    return Annotated[str, BeforeValidator(_id_text), Field(strict=True, max_length=ID_TEXT), WithJsonSchema(
        {"anyOf": [{"type": "string", "maxLength": ID_TEXT}, {"type": "integer"}],
         "description": f"The series id column {column!r}"})]


def _kept_id(column: str, kept: list[str]) -> Any:
    """An id of a series whose history the bundle keeps (listed in the schema when few)."""
    known = set(kept)

    def check(value: str) -> str:
        if value not in known:
            shown = ", ".join(repr(k) for k in kept[:10]) + (" …" if len(kept) > 10 else "")
            raise ValueError(f"unknown series {value[:64]!r}{did_you_mean(value, kept)}: the model keeps "
                             f"the history of {len(kept)} series ({shown}). Fix: name one of them, or send the "
                             "series' history")
        return value

    schema: dict[str, Any] = {"type": "string", "description": f"A value of {column!r} whose recent history the "
                              "model keeps"}
    if len(kept) <= ENUM_LIMIT:
        schema["enum"] = list(kept)
    return Annotated[str, BeforeValidator(_id_text), Field(strict=True, max_length=ID_TEXT), AfterValidator(check),
                     WithJsonSchema(schema)]


def _unique(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise ValueError(f"series {value[:64]!r} is named twice. Fix: name each series once")
        seen.add(value)
    return ids


def _whole(series: SeriesConfig, max_records: int) -> Any:
    """The rules of the body as a whole: something to forecast, and at most ``max_records``."""
    def check(body: dict[str, Any]) -> dict[str, Any]:
        records = len(body.get("history", [])) + len(body.get("future", []))
        if records > max_records:
            raise ValueError(f"{records} records (history and future together); the limit is {max_records} per "
                             "request (serving.max_records). Fix: send fewer steps of history (the model reads "
                             "the latest ones), or name kept series instead")
        if series.id and not body.get("history") and not body.get("series"):
            raise ValueError(f"nothing to forecast: send the recent 'history' of the series, or name 'series' "
                             f"(values of {series.id!r}) whose history the model keeps, or both")
        return body

    return check


def _describe(series: SeriesConfig, max_records: int) -> str:
    parts = [f"The next {series.horizon} steps of each series: send its recent `history` (rows with the target "
             f"{series.target!r})"]
    parts.append(", or name `series` whose history the model keeps" if series.id
                 else ", or nothing to forecast from the history the model keeps")
    if series.future:
        parts.append(f". `future` holds the future covariates ({', '.join(series.future)}) of every forecast step "
                     "after each series' last step of history")
    parts.append(f". At most {max_records} records of history and future together.")
    return "".join(parts)
