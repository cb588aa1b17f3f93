"""YAML in and out, and pydantic's validation errors turned into ConfigErrors that name
the path, the value received and the valid choices."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from modelmill.config.forecast import ForecastConfig
from modelmill.config.recommend import RecommendConfig
from modelmill.config.schema import PipelineConfig
from modelmill.errors import ConfigError, did_you_mean
from modelmill.registry import Registry

# The task seam: `task:` picks the config shape (and, above this layer, the pipeline, its
# evaluation, its outputs and its service endpoint: modelmill.tasks). A new task is a registration.
TaskConfig = PipelineConfig | ForecastConfig | RecommendConfig
TASK_CONFIGS: Registry[type[PipelineConfig] | type[ForecastConfig] | type[RecommendConfig]] = Registry("task")
TASK_CONFIGS.add("predict", PipelineConfig)
TASK_CONFIGS.add("forecast", ForecastConfig)
TASK_CONFIGS.add("recommend", RecommendConfig)


def load_config(source: str | Path | dict[str, Any] | PipelineConfig) -> PipelineConfig:
    """A ``task: predict`` config from a YAML path, a dict or a config object (returned as is);
    a config of another task is a clear error (see :func:`load_task_config`)."""
    if isinstance(source, PipelineConfig):
        return source
    if isinstance(source, dict):
        return parse_config(source)
    path = Path(source)
    return parse_config(_read_yaml(path), origin=str(path))


def load_task_config(source: str | Path | dict[str, Any] | TaskConfig) -> TaskConfig:
    """The config of any task (``task:`` picks its shape; default predict)."""
    if isinstance(source, (PipelineConfig, ForecastConfig, RecommendConfig)):
        return source
    if isinstance(source, dict):
        return parse_task_config(source)
    path = Path(source)
    return parse_task_config(_read_yaml(path), origin=str(path))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping (name:, data:, features: ...), got {type(raw).__name__}")
    return raw


def task_of(raw: dict[str, Any], origin: str = "config") -> str:
    """The ``task:`` a raw config names (predict when it names none), checked against the registry."""
    task = raw.get("task", "predict")
    if not isinstance(task, str):
        raise ConfigError(f"expected a name such as predict, forecast or recommend, got {task!r} ({origin})", path="task")
    TASK_CONFIGS.get(task, path="task")
    return task


def parse_task_config(raw: dict[str, Any], *, origin: str = "config") -> TaskConfig:
    model = TASK_CONFIGS.get(task_of(raw, origin), path="task")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, raw, origin, model) from None


def parse_config(raw: dict[str, Any], *, origin: str = "config") -> PipelineConfig:
    task = task_of(raw, origin)
    if task != "predict":
        raise ConfigError(f"{origin} is a `task: {task}` config, and this takes `task: predict` configs only "
                          "(one row in, one value out)", path="task")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, raw, origin, PipelineConfig) from None


def dump_config(config: TaskConfig, *, defaults: bool = True) -> str:
    """The config as YAML; with ``defaults`` every default is written out."""
    data = config.model_dump(mode="json", exclude_unset=not defaults)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def save_config(config: TaskConfig, path: Path) -> None:
    path.write_text(dump_config(config), encoding="utf-8")


# ----------------------------------------------------------------- error messages


def _config_error(exc: ValidationError, raw: dict[str, Any], origin: str, root: type[BaseModel]) -> ConfigError:
    lines = [_describe(error, raw, root) for error in exc.errors()]
    first_path = _dotted(exc.errors()[0]["loc"], raw)
    if len(lines) == 1:
        error = ConfigError(f"invalid config ({origin}): {lines[0]}")
    else:
        detail = "\n".join(f"  - {line}" for line in lines)
        error = ConfigError(f"invalid config ({origin}), {len(lines)} problems:\n{detail}")
    error.path = first_path
    return error


def _describe(error: Any, raw: dict[str, Any], root: type[BaseModel]) -> str:
    loc = error["loc"]
    path = _dotted(loc, raw)
    kind = error["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1], raw, root)
        key = str(loc[-1])
        return f"{path}: unknown key {key!r}{did_you_mean(key, fields)}; valid keys: {', '.join(fields)}"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tags = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
        tag = str(ctx.get("tag"))
        return f"{path}.type: unknown type {tag!r}{did_you_mean(tag, tags)}; valid: {', '.join(tags)}"
    if kind == "union_tag_not_found":
        return f"{path}: needs a `type:` key"
    if kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", ""))
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ",").split(",") if c.strip()]
        value = error.get("input")
        return f"{path}: got {value!r}{did_you_mean(str(value), choices)}; valid: {', '.join(choices)}"
    if kind == "missing":
        return f"{path}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if "input" in error and kind != "value_error" and not isinstance(error["input"], dict):
        return f"{path}: {message} (got {error['input']!r})"
    return f"{path}: {message}" if path else message


def _dotted(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """``('features', 3, 'number', 'normalization')`` → ``features[3].normalization``
    (the union tag that pydantic puts into the path is left out)."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif isinstance(node, dict) and item not in node and node.get("type") == item:
            continue  # discriminator tag
        else:
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def _fields_at(loc: tuple[Any, ...], raw: dict[str, Any], root: type[BaseModel]) -> list[str]:
    """The valid keys of the config section at ``loc``."""
    model: Any = root
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            node = node[item] if isinstance(node, list) and item < len(node) else {}
            continue
        if isinstance(node, dict) and item not in node and node.get("type") == item:
            continue
        annotation = model.model_fields[item].annotation if model and item in model.model_fields else None
        node = node.get(item, {}) if isinstance(node, dict) else {}
        model = _model_for(annotation, node)
    return sorted(model.model_fields) if model else []


def _model_for(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The pydantic model behind an annotation (through lists, unions and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    candidates: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found = _model_for(arg, node)
        if found is not None:
            candidates.append(found)
    tag = node.get("type") if isinstance(node, dict) else None
    for candidate in candidates:
        field = candidate.model_fields.get("type")
        if field is not None and tag is not None and field.default == tag:
            return candidate
    return candidates[0] if candidates else None
