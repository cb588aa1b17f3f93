"""The ``privacy:`` section: what happens to each column of personal data.

The same treatment runs wherever a value comes in (training, ``predict``, the REST
service, the prediction log), so no personal value is kept in clear anywhere::

    privacy:
      columns:
        email: drop
        customer_id: hash
        card: {action: mask, keep_last: 4}
        age: {action: generalise, width: 10}
      scrub: [review]

A column's entry is a mapping with ``action:`` or the bare action name (``email: drop``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, field_validator, model_validator
from pydantic_core import PydanticCustomError

from modelmill.config.section import Section
from modelmill.errors import did_you_mean, unknown_choice

DEFAULT_KEY_ENV = "MODELMILL_PII_KEY"


class DropAction(Section):
    """action: drop — the column is removed right after reading (requests may carry it; it is ignored)."""

    action: Literal["drop"] = Field("drop", description="drop: the column is removed right after reading; it "
                                    "must not be a feature. A request may still carry it: it is ignored.")

    def describe(self) -> str:
        return "dropped right after reading (never trained on, served or logged)"


class HashAction(Section):
    """action: hash — a keyed HMAC-SHA256 of the value, `hmac:` and 16 hex characters."""

    action: Literal["hash"] = Field("hash", description="hash: a keyed HMAC-SHA256 (key from privacy.key_env), "
                                    "written `hmac:` and 16 hex characters; equal values stay equal.")

    def describe(self) -> str:
        return "hashed (keyed HMAC-SHA256)"

    def value_kind(self) -> str:
        return "text"


class MaskAction(Section):
    """action: mask — letters and digits replaced by `*`, except the last few."""

    action: Literal["mask"] = Field("mask", description="mask: letters and digits become `*` except the last "
                                    "`keep_last` (never more than half of them); an e-mail address keeps its "
                                    "domain only.")
    keep_last: int = Field(4, ge=0, le=64, description="Letters and digits left visible at the end.")

    def describe(self) -> str:
        return f"masked (last {self.keep_last} letters or digits kept; an e-mail keeps its domain only)"

    def value_kind(self) -> str:
        return "text"


class GeneraliseAction(Section):
    """action: generalise — numbers to bands, dates to their month or year, text to its first characters."""

    action: Literal["generalise"] = Field("generalise", description="generalise: a coarser value; give exactly "
                                          "one of `width`, `to`, `keep`.")
    width: float | None = Field(None, gt=0, description="Numbers to the lower edge of bands of this width "
                                "(age 37 with width 10: 30).")
    to: Literal["year", "month", "day"] | None = Field(
        None, description="Dates to the first day of their year or month, or to the day (time dropped), "
        "written as the date feature reads them (ISO by default).")
    keep: int | None = Field(None, ge=1, le=1024, description="Text truncated to its first `keep` characters "
                             "(postcode SW1A 1AA with keep 3: SW1).")

    @model_validator(mode="after")
    def _exactly_one(self) -> GeneraliseAction:
        given = [name for name in ("width", "to", "keep") if getattr(self, name) is not None]
        if len(given) != 1:
            got = "none" if not given else " and ".join(given)
            raise ValueError(f"generalise needs exactly one of width, to, keep (got {got})")
        return self

    def describe(self) -> str:
        if self.width is not None:
            return f"generalised to bands of width {self.width:g}"
        if self.to is not None:
            return "generalised to the day" if self.to == "day" else f"generalised to the first day of its {self.to}"
        return f"generalised to its first {self.keep} characters"

    def value_kind(self) -> str:
        """What the treated value is: a number (width), a date (to) or text (keep)."""
        return "number" if self.width is not None else "date" if self.to is not None else "text"


ACTION_CLASSES: dict[str, type[Section]] = {
    "drop": DropAction, "hash": HashAction, "mask": MaskAction, "generalise": GeneraliseAction}


def _column_action(value: Any) -> Any:
    """A column's entry as its action's config: the bare name is shorthand for ``{action: NAME}``;
    an unknown action lists the valid ones. The entry is validated here, by its own class, so
    that its errors name the column (``privacy.columns.card``) and not a union's members."""
    if isinstance(value, Section):
        return value
    if isinstance(value, str):
        value = {"action": value}
    if not isinstance(value, dict):
        raise ValueError(f"expected an action name or a mapping with `action:`, got {type(value).__name__}; "
                         f"valid actions: {', '.join(sorted(ACTION_CLASSES))}")
    action = value.get("action")
    if action is None:
        raise ValueError(f"needs `action:` (one of {', '.join(sorted(ACTION_CLASSES))})")
    if action not in ACTION_CLASSES:
        raise ValueError(unknown_choice("action", str(action), ACTION_CLASSES))
    model = ACTION_CLASSES[str(action)]
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValueError("; ".join(_problem(model, error) for error in exc.errors())) from None


def _problem(model: type[Section], error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        fields = sorted(model.model_fields)
        return f"unknown key {where!r}{did_you_mean(where, fields)}; valid keys: {', '.join(fields)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


ColumnAction = DropAction | HashAction | MaskAction | GeneraliseAction
TreatAction = HashAction | MaskAction | GeneraliseAction  # the actions that keep the column, treated


def _with_shorthand(schema: dict[str, Any]) -> None:
    """The JSON Schema of ``columns`` takes the bare action name too (for editors)."""
    entry = schema.get("additionalProperties")
    if isinstance(entry, dict):
        schema["additionalProperties"] = {"anyOf": [{"type": "string", "enum": sorted(ACTION_CLASSES)}, entry]}


class PrivacyConfig(Section):
    """Personal data: what happens to each column, the same in training, prediction, serving and the log."""

    key_env: str = Field(DEFAULT_KEY_ENV, min_length=1, description="Environment variable holding the secret "
                         "key (16 bytes or more) of `hash`; the bundle keeps its fingerprint, never the key.")
    columns: dict[str, ColumnAction] = Field(
        default_factory=dict, description="Column → action: drop, hash, mask or generalise (a mapping with "
        "`action:` and its options, or the bare action name).",
        json_schema_extra=lambda schema: _with_shorthand(schema))
    scrub: list[str] = Field(default_factory=list, description="Free-text features whose detected personal "
                             "data (e-mails, phone and card numbers, names …) become placeholders such as "
                             "[EMAIL] before tokenising.")

    @field_validator("columns", mode="wrap")
    @classmethod
    def _actions(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Each entry made its action's config (shorthand, unknown actions), every column's
        problem under its own path."""
        if not isinstance(value, dict):
            return handler(value)
        actions: dict[Any, Any] = {}
        errors: list[Any] = []
        for name, entry in value.items():
            try:
                actions[name] = _column_action(entry)
            except ValueError as exc:
                errors.append({"type": PydanticCustomError("value_error", "{problem}", {"problem": str(exc)}),
                               "loc": (name,), "input": entry})
        if errors:
            raise ValidationError.from_exception_data("columns", errors)
        return handler(actions)

    @model_validator(mode="after")
    def _scrub_apart(self) -> PrivacyConfig:
        both = sorted(set(self.scrub) & set(self.columns))
        if both:
            raise ValueError(f"scrub: {', '.join(both)} also under columns; a column takes one treatment")
        if len(set(self.scrub)) != len(self.scrub):
            raise ValueError("scrub: a column is listed twice")
        return self

    @property
    def needs_key(self) -> bool:
        return any(isinstance(action, HashAction) for action in self.columns.values())
