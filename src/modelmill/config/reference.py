"""The config reference (docs/config.md) and the JSON Schema, generated from the config
classes themselves so that the documentation cannot drift from the code."""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from modelmill.config.forecast import ForecastConfig
from modelmill.config.recommend import RecommendConfig
from modelmill.config.schema import PipelineConfig


def json_schema(task: str = "predict") -> str:
    """JSON Schema of a task's whole config, for editors (YAML language servers)."""
    from modelmill.config.io import TASK_CONFIGS

    return json.dumps(TASK_CONFIGS.get(task, path="--task").model_json_schema(), indent=2)


def markdown_reference() -> str:
    lines = ["# Config reference", "",
             "Generated from the config classes (`modelmill render-config FILE` prints a config with",
             "every default filled in). Components chosen by `type:` list each type's own keys.", ""]
    seen: set[type[BaseModel]] = set()
    _section(PipelineConfig, "(top level)", lines, seen)
    lines += ["# task: forecast", "",
              "A forecast config shares `data` (without `split`), `training`, `evaluation` and `serving` with the",
              "predict task (see above) and has these keys of its own.", ""]
    seen -= {ForecastConfig}
    _section(ForecastConfig, "(top level)", lines, seen)
    lines += ["# task: recommend", "",
              "A recommend config shares `data` (without `split`) and `training` with the predict task (see above)",
              "and has these keys of its own. Ratings at or above `min_rating` are the positives (movielens: 4).",
              "Its `training` defaults are a recommender's, laid under the keys a config gives: "
              + ", ".join(f"`{key}: {json.dumps(value)}`" for key, value in _recommend_training_defaults().items())
              + ".", ""]
    seen -= {RecommendConfig}
    _section(RecommendConfig, "(top level)", lines, seen)
    return "\n".join(lines) + "\n"


def _recommend_training_defaults() -> dict[str, Any]:
    from modelmill.config.recommend import recommend_training

    defaults = recommend_training()
    whole = defaults.model_dump(mode="json")
    flat: dict[str, Any] = {}
    for key in sorted(defaults.model_fields_set):
        if isinstance(whole[key], dict):
            flat.update({f"{key}.{k}": v for k, v in whole[key].items() if k != "betas"})
        else:
            flat[key] = whole[key]
    return flat


def _section(model: type[BaseModel], title: str, lines: list[str], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    # the docstring's first paragraph, whole: its first line alone cut sentences in half
    first = (model.__doc__ or "").strip().split("\n\n")[0]
    summary = " ".join(line.strip() for line in first.splitlines())
    lines += [f"## {title}", ""]
    if summary and not summary.startswith("Base"):
        lines += [summary, ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    children: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        default = _default(field)
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {default} | {field.description or ''} |")
        for child in _models_in(field.annotation):
            children.append((_child_title(title, name, child), child))
    lines.append("")
    for child_title, child in children:
        _section(child, child_title, lines, seen)


def _child_title(parent: str, name: str, child: type[BaseModel]) -> str:
    prefix = "" if parent == "(top level)" else parent.split(" ")[0] + "."
    kind = child.model_fields.get("type")
    tag = f" (type: {kind.default})" if kind is not None and isinstance(kind.default, str) else ""
    return f"{prefix}{name}{tag}"


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "see below"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):  # e.g. the default CNN
            value = [item.model_dump(exclude_defaults=True) | {"type": item.type} for item in value]  # type: ignore[attr-defined]
        return f"`{json.dumps(value)}`"
    return f"`{json.dumps(field.default)}`"


def _type_name(annotation: Any) -> str:
    models = _models_in(annotation)
    tags = [m.model_fields["type"].default for m in models if "type" in m.model_fields]
    if len(models) > 1 and len(tags) == len(models):
        prefix = "list of " if typing.get_origin(annotation) is list else ""
        return prefix + "one of type: " + ", ".join(str(t) for t in tags)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # a constrained type: its bounds read as words
        base, *marks = typing.get_args(annotation)
        bounds = [f"{sign} {getattr(m, attr)}" for m in marks for metadata in [getattr(m, "metadata", [m])]
                  for m in metadata for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
                  if getattr(m, attr, None) is not None]
        return _type_name(base) + (f" {' '.join(bounds)}" if bounds else "")
    if origin in (typing.Union, types.UnionType) and any(typing.get_origin(a) is typing.Annotated
                                                         for a in typing.get_args(annotation)):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__.replace("Config", "").lower() if issubclass(annotation, BaseModel) else annotation.__name__
    text = re.sub(r"modelmill\.config\.\w+\.", "", str(annotation).replace("typing.", ""))  # the class names alone
    return text.replace("|", "\\|")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found
