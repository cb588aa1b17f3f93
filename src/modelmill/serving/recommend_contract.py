"""The request contract of a served recommender: ``POST /v1/recommend``.

::

    {"user": "42", "k": 10, "exclude": ["318", "296"], "items": ["1", "50"]}

``user`` is the only field needed. ``k`` is the list's length (1 to ``serving.max_k``; when left
out, the first of the bundle's ``evaluation.k``, the length the model was judged on, or ``max_k``
when that is smaller); ``exclude`` names items never to list; ``items``
are the user's known items for this request (a new user's session, say): added to what the
bundle knows of a known user, and what an unknown user's list is ranked from.

Ids are strings everywhere, normalised as the bundle's ids were when its data was read
(:func:`modelmill.recommending.read.as_id`): text stripped of surrounding spaces (``" 42 "`` is
``"42"``), a whole number read as its digits, of any size (``42``, ``42.0`` and ``"42"`` are the
same user; so is a uint64 id past 2^63). A blank id, a number with a fraction, a whole float
past 2^53 (not exact), a boolean, null or a list is a 422 that says so. An id has at most
:data:`ID_TEXT` characters, or as many as the bundle's longest id. One
pydantic ``TypeAdapter`` checks the raw bytes (pydantic-core parses the JSON: deep nesting, NaN
and wrong types are caught with the field's path) and its JSON Schema is the request body of
the OpenAPI docs, so the docs and the checks cannot differ (as :mod:`modelmill.serving.schema`
does for predictions and :mod:`modelmill.serving.forecast_contract` for forecasts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, WithJsonSchema
from typing_extensions import NotRequired, TypedDict

from modelmill.recommending.read import as_id
from modelmill.serving.schema import invalid_body

__all__ = ["ID_TEXT", "RecommendContract", "RecommendRequest", "build_recommend_contract"]

ID_TEXT = 256  # characters of a user or item id, at least (more when the bundle holds longer ids)
_EXACT = 2 ** 53  # whole floats below this are exact: 42.0 is the id "42"; past it a float is refused


@dataclass(frozen=True)
class RecommendRequest:
    """A checked ``POST /v1/recommend`` body, every id as text.

    Attributes:
        user: The user asked about.
        k: The list's length.
        exclude: Items never to list.
        items: The user's known items sent with the request; None when the request sent none.
    """

    user: str
    k: int
    exclude: list[str]
    items: list[str] | None


@dataclass(frozen=True)
class RecommendContract:
    """What ``POST /v1/recommend`` accepts for one model, and an example of it.

    Attributes:
        max_k: The longest list a request may ask for (``serving.max_k``).
        default_k: The list's length when a request leaves ``k`` out (at most ``max_k``).
        max_exclude: The most ids ``exclude`` and ``items`` may each hold (``serving.max_exclude``).
        id_text: The most characters of an id (:data:`ID_TEXT`, or the bundle's longest id).
        adapter: Validates a raw body.
        json_schema: The body's JSON Schema.
        example: A valid body (a user the bundle knows).
    """

    max_k: int
    default_k: int
    max_exclude: int
    id_text: int
    adapter: TypeAdapter[Any]
    json_schema: dict[str, Any]
    example: dict[str, Any]

    def read(self, body: bytes) -> RecommendRequest:
        """The body checked: 400 when it is not JSON, 422 with each wrong field's path."""
        try:
            payload = self.adapter.validate_json(body)
        except ValidationError as exc:
            raise invalid_body(exc, "the request does not match the recommendation's input schema ({\"user\": "
                               "ID, \"k\": N, \"exclude\": [IDS], \"items\": [IDS]}; GET /v1/model and "
                               "/openapi.json describe it)") from None
        return self.request_of(payload)

    def request_of(self, payload: dict[str, Any]) -> RecommendRequest:
        items = payload.get("items")
        return RecommendRequest(payload["user"], int(payload.get("k", self.default_k)),
                                list(payload.get("exclude", [])), None if items is None else list(items))


def build_recommend_contract(*, max_k: int, default_k: int, max_exclude: int, example: dict[str, Any],
                             id_text: int = ID_TEXT) -> RecommendContract:
    """The request contract of a recommender served with these limits; ``default_k``: the list's
    length when a request leaves ``k`` out (the server passes its bundle's first
    ``evaluation.k``; capped at ``max_k``); ``id_text``: the most characters of an id (at least
    :data:`ID_TEXT`; the server passes its bundle's longest id when longer, so that every id the
    bundle holds can be asked for)."""
    id_text = max(ID_TEXT, id_text)
    default_k = max(1, min(default_k, max_k))
    item = _id_type("An item id", id_text, "an item id")
    ids: Any = list[item]  # type: ignore[valid-type]
    user = _id_type("The user id: one the model knows, or a new one (ranked from `items` when sent, else the "
                    "most popular items)", id_text, "the user id")
    fields: dict[str, Any] = {
        "user": user,
        "k": NotRequired[Annotated[int, Field(strict=True), AfterValidator(_k_check(max_k)), WithJsonSchema(
            {"type": "integer", "minimum": 1, "maximum": max_k, "default": default_k,
             "description": f"How many items to list (1 to {max_k}; default {default_k})"})]],
        "exclude": NotRequired[Annotated[ids, AfterValidator(_ids_check("exclude", max_exclude)), WithJsonSchema(
            {"type": "array", "items": _id_schema("An item id", id_text), "maxItems": max_exclude,
             "description": "Items never to list (ids not in the catalogue are ignored)"})]],
        "items": NotRequired[Annotated[ids, AfterValidator(_ids_check("items", max_exclude)), WithJsonSchema(
            {"type": "array", "items": _id_schema("An item id", id_text), "maxItems": max_exclude,
             "description": "The user's known items for this request: never listed, and what the list is "
                            "ranked from (with what the model knows of the user)"})]],
    }
    body = TypedDict("RecommendRequest", fields)  # type: ignore[misc]
    body.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    adapter: TypeAdapter[Any] = TypeAdapter(body)
    json_schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    json_schema["description"] = (
        f"The top `k` items for `user`, best first, leaving out the items the user is known to have, those of "
        f"`items` and those of `exclude`. Ids are strings, stripped of surrounding spaces; a whole number of any "
        f"size is read as its digits (42, 42.0 and \"42\" are the same id). At most {max_exclude} ids in "
        f"`exclude` and in `items` each.")
    adapter.validate_python(example)  # the docs' example is itself a valid request
    return RecommendContract(max_k, default_k, max_exclude, id_text, adapter, json_schema, example)


def _id_reader(limit: int, name: str) -> Any:
    """The id of one value, as the bundle's ids were read (:func:`~modelmill.recommending.read.as_id`):
    text stripped, whole numbers (of any size; floats below 2^53, which are exact) as their digits.
    A blank id, a fraction, a boolean or anything else is refused: 1.5 or true as an id is a
    mistake, not an id."""

    def read(value: Any) -> str:
        if isinstance(value, str):
            if len(value) > limit:
                raise ValueError(f"an id has at most {limit} characters, got {len(value)}. Fix: send the id "
                                 "the data holds")
            text = as_id(value)
            if text is None:
                raise ValueError(f"{name} is {'empty' if not value else 'blank'}. Fix: send the id the data holds"
                                 + (" (a new user's too: the list then comes from the items sent, or the most "
                                    "popular)" if name == "the user id" else ""))
            return text
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # any size: a uint64 id past 2^63 too
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            if abs(value) < _EXACT:
                return str(int(value))  # 42.0 is "42", as a column of ids with a gap is read
            raise ValueError(f"a whole number past 2^53 sent with a fraction part or an exponent ({value!r}) is not "
                             "exact. Fix: send the id as a string, or as an integer")
        kind = {bool: "a boolean", type(None): "null", list: "a list", dict: "an object"}.get(type(value))
        if isinstance(value, float):
            kind = "a number with a fraction" if math.isfinite(value) else "a number that is not finite"
        raise ValueError(f"an id is a string or a whole number (42, 42.0 and \"42\" are the same id), got "
                         f"{kind or type(value).__name__}. Fix: send the id as a string")

    return read


def _k_check(max_k: int) -> Any:
    def check(k: int) -> int:
        if not 1 <= k <= max_k:
            raise ValueError(f"k is {k}; a list holds 1 to {max_k} items (serving.max_k). Fix: ask for "
                             f"{'at least 1' if k < 1 else f'at most {max_k}'}")
        return k

    return check


def _ids_check(field: str, max_exclude: int) -> Any:
    def check(ids: list[str]) -> list[str]:
        if len(ids) > max_exclude:
            raise ValueError(f"{len(ids)} ids in {field!r}; the limit is {max_exclude} per request "
                             f"(serving.max_exclude). Fix: send at most {max_exclude}")
        return ids

    return check


def _id_schema(description: str, limit: int) -> dict[str, Any]:
    """An id in the docs: text with something besides spaces, or a whole number of any size
    (no minimum or maximum: a uint64 id is one)."""
    return {"anyOf": [{"type": "string", "minLength": 1, "maxLength": limit, "pattern": r"\S"},
                      {"type": "integer", "description": "Of any size (a uint64 id too); read as its digits"}],
            "description": f"{description}. Surrounding spaces are stripped"}


def _id_type(description: str, limit: int, name: str) -> Any:
    return Annotated[str, BeforeValidator(_id_reader(limit, name)),  # type: ignore[misc]
                     WithJsonSchema(_id_schema(description, limit))]
