"""The request contract of a served model, built from its features.

One pydantic ``TypeAdapter`` validates raw request bytes (pydantic-core parses the JSON,
so NaN, deep nesting and wrong types are caught there with the field path) and its JSON
Schema is the request body of the OpenAPI docs, so the docs and the checks cannot differ.
Each feature gives the type of its own field (``Feature.request_type``) and an example.

A column under the privacy policy is the exception: its field takes the raw personal value
(a bounded string, or a number for bands, or a date), treats it on arrival (hash, mask,
generalise, scrub), and has no allowed values and no example from the data; a dropped
column is an optional field whose value is dropped on arrival. So the records that leave
the contract (for the model, the prediction log, a shadow, an explanation) hold no
personal value in clear, and no error message repeats one.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from typing_extensions import NotRequired, TypedDict

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, WithJsonSchema

from modelmill.errors import ModelmillError
from modelmill.features import Feature
from modelmill.features.request import MAX_TEXT, canonical, date_type, json_or_text, number_type
from modelmill.privacy.policy import PrivacyPolicy
from modelmill.serving.problem import Problem

_PERSONAL_TEXT = 1024  # characters of a hashed, masked or truncated value
_EXAMPLES = {"number": 0.0, "text": "an example value"}  # never a value of the data
_EXAMPLE_DATE = datetime.date(2024, 1, 31)  # written in the feature's own format


@dataclass(frozen=True)
class RequestContract:
    """What ``POST /v1/predict`` accepts for one model, and an example of it."""

    columns: list[str]
    adapter: TypeAdapter[Any]
    json_schema: dict[str, Any]
    example: dict[str, Any]
    form_values: dict[str, Callable[[str], Any]]  # column → how a plain multipart field is read


def build_contract(features: Sequence[Feature[Any]], profile: dict[str, Any], *, max_records: int,
                   unknown_categories: str, policy: PrivacyPolicy | None = None) -> RequestContract:
    """The request contract of fitted features (``profile``: the bundle's, for examples;
    ``policy``: the predictor's privacy policy, applied to each value on arrival)."""
    stats = profile.get("features", {})
    strict = unknown_categories == "reject"
    treated = set(policy.treated) if policy is not None else set()
    fields: dict[str, Any] = {}
    example: dict[str, Any] = {}
    form_values: dict[str, Callable[[str], Any]] = {}
    for f in features:
        if policy is not None and f.name in treated:
            fields[f.name] = _personal_type(policy, f)
            example[f.name] = _personal_example(policy, f)
            form_values[f.name] = json_or_text if policy.value_kind(f.name) == "number" else str
        else:
            fields[f.name] = f.request_type(strict_values=strict)
            example[f.name] = f.example(stats.get(f.name, {}))
            form_values[f.name] = f.form_value
    dropped = list(policy.dropped) if policy is not None else []
    for name in dropped:  # clients send whole records: accepted, and dropped on arrival
        fields[name] = NotRequired[Annotated[Any, WithJsonSchema(
            {"description": "personal data the model does not use: accepted and dropped on arrival, never "
                            "stored (privacy: drop)"})]]
        form_values[name] = str
    record = TypedDict("Record", fields)  # type: ignore[misc,name-match]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    item: Any = Annotated[record, AfterValidator(_without(dropped))] if dropped else record
    body = TypedDict("PredictRequest", {  # type: ignore[misc,name-match]
        "instances": Annotated[list[item], Field(min_length=1, max_length=max_records)],  # type: ignore[valid-type]
    })
    body.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    adapter: TypeAdapter[Any] = TypeAdapter(body)
    json_schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    return RequestContract([f.name for f in features], adapter, json_schema, {"instances": [example]}, form_values)


def _personal_example(policy: PrivacyPolicy, feature: Feature[Any]) -> Any:
    """An example value of a column under the policy: the feature's own for scrubbed text, a
    made-up one otherwise (a date in the feature's ``format:``, which the treatment reads)."""
    if policy.action(feature.name) == "scrub":
        return feature.example({})
    kind = policy.value_kind(feature.name)
    if kind == "date":
        date_format = policy.date_format(feature.name)
        return _EXAMPLE_DATE.strftime(date_format) if date_format else _EXAMPLE_DATE.isoformat()
    return _EXAMPLES[kind]


def _personal_type(policy: PrivacyPolicy, feature: Feature[Any]) -> Any:
    """The field of a column under the policy: the raw value, of its kind, treated on arrival;
    no allowed values, no examples (they would be the data's, treated)."""
    name = feature.name
    action = policy.action(name)
    kind = policy.value_kind(name)

    def treat(value: Any) -> Any:
        try:
            return policy.value(name, value)
        except ModelmillError:  # its message never holds the value
            raise ValueError(f"not a {kind} this model reads (the value is not shown: personal data)") from None

    described = {"description": f"personal data, {action} on arrival (privacy policy); never stored in clear"}
    if action == "scrub":
        return Annotated[feature.request_type(strict_values=False), AfterValidator(treat),
                         WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_TEXT}, {"type": "null"}],
                                         **described})]
    if kind == "number":
        return Annotated[number_type(), AfterValidator(treat),
                         WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "null"}], **described})]
    if kind == "date":
        return Annotated[date_type(), AfterValidator(treat),
                         WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 64}, {"type": "null"}],
                                         **described})]
    # the length limit on the text alone: on the union, pydantic applies it to null too
    return Annotated[Annotated[str, Field(max_length=_PERSONAL_TEXT)] | None, BeforeValidator(canonical),
                     AfterValidator(treat),
                     WithJsonSchema({"anyOf": [{"type": "string", "maxLength": _PERSONAL_TEXT}, {"type": "null"}],
                                     **described})]


def _without(dropped: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def drop(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k not in dropped}
    return drop


ErrorKind = Literal["invalid_json", "invalid_request"]
def public_errors(errors: list[Any]) -> tuple[ErrorKind, list[dict[str, Any]]]:
    """pydantic's errors without the input values (which can be huge or sensitive)."""
    details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")).removeprefix("Value error, ")[:300],
                "type": e.get("type", "")} for e in errors[:20]]
    kind: ErrorKind = "invalid_json" if any(e.get("type") == "json_invalid" for e in errors) \
        else "invalid_request"
    return kind, details


def invalid_body(exc: ValidationError, mismatch: str) -> Problem:
    """The answer to a body its schema refused: 400 when it is not JSON, else 422 saying
    ``mismatch``; each wrong field's path (never its value) in the details."""
    kind, details = public_errors(exc.errors(include_url=False, include_input=False, include_context=False))
    if kind == "invalid_json":
        return Problem(400, kind, "the body is not valid JSON", details=details)
    return Problem(422, kind, mismatch, details=details)
