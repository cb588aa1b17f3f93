"""Building blocks of the request contract that feature types use for their
``request_type``: pydantic types whose JSON Schema is the column's fragment of the OpenAPI
request body, so the docs and the checks cannot differ."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from modelmill.errors import did_you_mean

# Above this many allowed values the OpenAPI schema says "string" and lists none
# (the check still applies); a 10,000-value enum makes the docs page unusable.
ENUM_LIMIT = 500
MAX_TEXT = 100_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024


def canonical(value: Any) -> Any:
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


def one_of(allowed: list[str], *, pii: bool = False) -> AfterValidator:
    """A check that the value is one of ``allowed``. The message never echoes the value (a 422
    body goes back to a client and into logs, and a redaction only hides what a detector
    recognises): it gives its length, and for an ordinary column the close match and the
    known values, all from the training vocabulary; for a personal one (``pii``), neither."""
    known = set(allowed)

    def check(value: str | None) -> str | None:
        if value is not None and value not in known:
            got = f"unknown value ({len(value)} characters)"
            if pii:
                raise ValueError(f"{got}; the known values of a personal-data feature are not listed")
            shown = ", ".join(repr(v) for v in allowed[:20]) + (" …" if len(allowed) > 20 else "")
            raise ValueError(f"{got}{did_you_mean(value, allowed)}; known: {shown}")
        return value

    return AfterValidator(check)


def number_type() -> Any:
    return Annotated[float | None, Field(strict=True, allow_inf_nan=False)]


def binary_type(allowed: list[str]) -> Any:
    """A value of two, written as the data had them (booleans and 0/1 as JSON's own types)."""
    if set(allowed) == {"false", "true"}:
        schema: dict[str, Any] = {"anyOf": [{"type": "boolean"}, {"type": "null"}]}
    elif set(allowed) == {"0", "1"}:
        schema = {"anyOf": [{"type": "integer", "enum": [0, 1]}, {"type": "null"}]}
    else:
        schema = {"anyOf": [{"type": "string", "enum": allowed}, {"type": "null"}]}
    return Annotated[str | None, BeforeValidator(canonical), one_of(allowed), WithJsonSchema(schema)]


def category_type(allowed: list[str], strict_values: bool, *, pii: bool = False) -> Any:
    """A category's request type: any string, or (``strict_values``) one of ``allowed``,
    listed in the schema unless there are too many or they are personal data (``pii``)."""
    if not strict_values:
        schema: dict[str, Any] = {"anyOf": [{"type": "string", "maxLength": 1024}, {"type": "null"}]}
        if not pii:
            schema["examples"] = allowed[:10]
        # the length limit on the text alone: on the union, pydantic applies it to null too (a TypeError)
        return Annotated[Annotated[str, Field(max_length=1024)] | None, BeforeValidator(canonical),
                         WithJsonSchema(schema)]
    if pii:
        listed: dict[str, Any] = {"type": "string", "description": "a known value (personal data: not listed)"}
    elif len(allowed) <= ENUM_LIMIT:
        listed = {"type": "string", "enum": allowed}
    else:
        listed = {"type": "string", "description": f"one of {len(allowed)} known values"}
    schema = {"anyOf": [listed, {"type": "null"}]}
    return Annotated[str | None, BeforeValidator(canonical), one_of(allowed, pii=pii), WithJsonSchema(schema)]


def date_type() -> Any:
    return Annotated[str | None, Field(max_length=64, json_schema_extra={"format": "date-time"})]


def text_type() -> Any:
    return Annotated[str | None, Field(max_length=MAX_TEXT)]


def json_or_text(text: str) -> Any:
    """A form field read as JSON when it is JSON (``3.5``, ``true``, ``null``), else its text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
