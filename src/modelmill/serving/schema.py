"""The request contract of a served model, built from its features.

One pydantic ``TypeAdapter`` validates raw request bytes (pydantic-core parses the JSON,
so NaN, deep nesting and wrong types are caught there with the field path) and its JSON
Schema is the request body of the OpenAPI docs, so the docs and the checks cannot differ.
Each feature gives the type of its own field (``Feature.request_type``) and an example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict

from pydantic import ConfigDict, Field, TypeAdapter

from modelmill.features import Feature


@dataclass(frozen=True)
class RequestContract:
    """What ``POST /v1/predict`` accepts for one model, and an example of it."""

    columns: list[str]
    adapter: TypeAdapter[Any]
    json_schema: dict[str, Any]
    example: dict[str, Any]
    form_values: dict[str, Callable[[str], Any]]  # column → how a plain multipart field is read


def build_contract(features: Sequence[Feature[Any]], profile: dict[str, Any], *, max_records: int,
                   unknown_categories: str) -> RequestContract:
    """The request contract of fitted features (``profile``: the bundle's, for examples)."""
    stats = profile.get("features", {})
    strict = unknown_categories == "reject"
    fields = {f.name: f.request_type(strict_values=strict) for f in features}
    example = {f.name: f.example(stats.get(f.name, {})) for f in features}
    record = TypedDict("Record", fields)  # type: ignore[misc,name-match]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    body = TypedDict("PredictRequest", {  # type: ignore[misc,name-match]
        "instances": Annotated[list[record], Field(min_length=1, max_length=max_records)],  # type: ignore[valid-type]
    })
    body.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    adapter: TypeAdapter[Any] = TypeAdapter(body)
    json_schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    return RequestContract([f.name for f in features], adapter, json_schema, {"instances": [example]},
                           {f.name: f.form_value for f in features})


ErrorKind = Literal["invalid_json", "invalid_request"]
def public_errors(errors: list[Any]) -> tuple[ErrorKind, list[dict[str, Any]]]:
    """pydantic's errors without the input values (which can be huge or sensitive)."""
    details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")).removeprefix("Value error, ")[:300],
                "type": e.get("type", "")} for e in errors[:20]]
    kind: ErrorKind = "invalid_json" if any(e.get("type") == "json_invalid" for e in errors) \
        else "invalid_request"
    return kind, details
