"""The request contract of a served model, built from the bundle's input schema.

One pydantic ``TypeAdapter`` validates raw request bytes (pydantic-core parses the JSON,
so NaN, deep nesting and wrong types are caught there with the field path) and its JSON
Schema is the request body of the OpenAPI docs, so the docs and the checks cannot differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict

from pydantic import AfterValidator, Base64Bytes, BeforeValidator, ConfigDict, Field, TypeAdapter, WithJsonSchema

from modelmill.errors import did_you_mean

# Above this many allowed values the OpenAPI schema says "string" and lists none
# (the check still applies); a 10,000-value enum makes the docs page unusable.
ENUM_LIMIT = 500
MAX_TEXT = 100_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class RequestContract:
    """What ``POST /v1/predict`` accepts for one model, and an example of it."""

    columns: list[str]
    adapter: TypeAdapter[Any]
    json_schema: dict[str, Any]
    example: dict[str, Any]
    kinds: dict[str, str]  # column → feature type (number, category, text, image, …)


def build_contract(schema: dict[str, Any], profile: dict[str, Any], *, max_records: int,
                   unknown_categories: str) -> RequestContract:
    """The request contract for a bundle's ``schema.json`` (and ``profile.json``, for examples)."""
    fields: dict[str, Any] = {}
    example: dict[str, Any] = {}
    stats = profile.get("features", {})
    for column in schema["inputs"]:
        name, kind = column["name"], column["type"]
        fields[name] = _field_type(kind, column.get("values"), unknown_categories == "reject")
        example[name] = _example_value(kind, column.get("values"), stats.get(name, {}))
    record = TypedDict("Record", fields)  # type: ignore[misc,name-match]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    body = TypedDict("PredictRequest", {  # type: ignore[misc,name-match]
        "instances": Annotated[list[record], Field(min_length=1, max_length=max_records)],  # type: ignore[valid-type]
    })
    body.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    adapter: TypeAdapter[Any] = TypeAdapter(body)
    json_schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    return RequestContract([c["name"] for c in schema["inputs"]], adapter, json_schema,
                           {"instances": [example]}, {c["name"]: c["type"] for c in schema["inputs"]})


def _field_type(kind: str, values: list[str] | None, strict_values: bool) -> Any:
    """Every field is required and may be null (a missing value, filled like in training)."""
    if kind == "number":
        return Annotated[float | None, Field(strict=True, allow_inf_nan=False)]
    if kind == "binary":
        return _binary_type([str(v) for v in values or []])
    if kind == "category":
        return _category_type([str(v) for v in values or []], strict_values)
    if kind == "date":
        return Annotated[str | None, Field(max_length=64, json_schema_extra={"format": "date-time"})]
    if kind == "image":
        # The encoded file as base64, never a path: a request must not name files on the server.
        return Annotated[Base64Bytes | None, Field(max_length=MAX_IMAGE_BYTES)]
    return Annotated[str | None, Field(max_length=MAX_TEXT)]


def _canonical(value: Any) -> Any:
    """1, 1.0, "1" and True mean the same to binary and category features (as in training)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return str(value)
    return value


def _one_of(allowed: list[str]) -> AfterValidator:
    known = set(allowed)

    def check(value: str | None) -> str | None:
        if value is not None and value not in known:
            shown = ", ".join(repr(v) for v in allowed[:20]) + (" …" if len(allowed) > 20 else "")
            raise ValueError(f"unknown value {value[:64]!r}{did_you_mean(value, allowed)}; known: {shown}")
        return value

    return AfterValidator(check)


def _binary_type(allowed: list[str]) -> Any:
    if set(allowed) == {"false", "true"}:
        schema: dict[str, Any] = {"anyOf": [{"type": "boolean"}, {"type": "null"}]}
    elif set(allowed) == {"0", "1"}:
        schema = {"anyOf": [{"type": "integer", "enum": [0, 1]}, {"type": "null"}]}
    else:
        schema = {"anyOf": [{"type": "string", "enum": allowed}, {"type": "null"}]}
    return Annotated[str | None, BeforeValidator(_canonical), _one_of(allowed), WithJsonSchema(schema)]


def _category_type(allowed: list[str], strict_values: bool) -> Any:
    if not strict_values:
        schema: dict[str, Any] = {"anyOf": [{"type": "string", "maxLength": 1024}, {"type": "null"}],
                                  "examples": allowed[:10]}
        return Annotated[str | None, BeforeValidator(_canonical), Field(max_length=1024), WithJsonSchema(schema)]
    listed: dict[str, Any] = {"type": "string", "enum": allowed} if len(allowed) <= ENUM_LIMIT \
        else {"type": "string", "description": f"one of {len(allowed)} known values"}
    schema = {"anyOf": [listed, {"type": "null"}]}
    return Annotated[str | None, BeforeValidator(_canonical), _one_of(allowed), WithJsonSchema(schema)]


def _example_value(kind: str, values: list[str] | None, stats: dict[str, Any]) -> Any:
    if kind == "number":
        mean = stats.get("mean")
        return round(float(mean), 3) if isinstance(mean, (int, float)) and math.isfinite(mean) else 0.0
    if kind == "binary" and values:
        allowed = [str(v) for v in values]
        if set(allowed) == {"false", "true"}:
            return True
        return int(allowed[-1]) if set(allowed) == {"0", "1"} else allowed[-1]
    if kind == "category":
        frequencies = stats.get("frequencies") or {}
        if frequencies:
            return str(next(iter(frequencies)))
        return str(values[0]) if values else None
    if kind == "date":
        return "2024-01-31T12:00:00"
    if kind == "image":
        return _example_image(stats)
    return "an example text" if kind == "text" else None


def _example_image(stats: dict[str, Any]) -> str:
    """A blank PNG at the feature's size and channels, base64-encoded."""
    import base64
    import io

    from PIL import Image

    height, width = stats.get("size") or (8, 8)
    image = Image.new("L" if stats.get("channels", 1) == 1 else "RGB", (int(width), int(height)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


ErrorKind = Literal["invalid_json", "invalid_request"]


def public_errors(errors: list[Any]) -> tuple[ErrorKind, list[dict[str, Any]]]:
    """pydantic's errors without the input values (which can be huge or sensitive)."""
    details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")).removeprefix("Value error, ")[:300],
                "type": e.get("type", "")} for e in errors[:20]]
    kind: ErrorKind = "invalid_json" if any(e.get("type") == "json_invalid" for e in errors) \
        else "invalid_request"
    return kind, details
