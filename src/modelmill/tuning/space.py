"""Search spaces: parameters named by their config path, conditional branches (a parameter
exists only when its parent's choice is taken), the built-in space of each model type, and
a trial's values applied to a config.

Every path and every end of every range is checked against the config tree before the
first trial, so a typo or a value the config refuses is an error up front, not a study
full of failed trials.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelmill.config import PipelineConfig, parse_config
from modelmill.config.models import AutoModelConfig, candidate_config
from modelmill.errors import ConfigError, ModelmillError, did_you_mean

SPEC_KEYS = ("low", "high", "log", "step", "choices")
Override = tuple[str, Any]

# The parameters that matter most for each model type, over ranges that hold the good
# settings of the tables we measured (docs/benchmarks.md) and stay cheap to fit; a model
# type without an entry has nothing worth searching.
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "gbdt": {
        "model.learning_rate": {"low": 0.01, "high": 0.2, "log": True},
        "model.leaves": {"low": 8, "high": 128, "log": True},
        "model.min_child_samples": {"low": 5, "high": 100, "log": True},
        "model.feature_fraction": {"low": 0.4, "high": 1.0},
    },
    "mlp": {
        "model.hidden": {"choices": [[128], [256, 128], [512, 256], [256, 256, 128]]},
        "model.dropout": {"low": 0.0, "high": 0.5},
        "training.optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "training.optimizer.weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    },
    "linear": {
        "training.optimizer.lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "training.l2": {"low": 1e-6, "high": 1e-2, "log": True},
    },
    "tfidf_logistic": {
        "model.C": {"low": 0.1, "high": 100.0, "log": True},
        "model.ngrams": {"choices": [1, 2]},
    },
}


@dataclass(frozen=True)
class Param:
    """One searched config value. ``name`` is what the study calls it: the path, behind the
    choices it depends on (``model.type=gbdt/model.leaves``)."""

    path: str
    name: str
    kind: Literal["float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    branches: dict[str, tuple[Param, ...]] = field(default_factory=dict)

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna trial."""
        if self.kind == "choice":
            encoded = trial.suggest_categorical(self.name, [_encode(c) for c in self.choices])
            return self.choices[[_encode(c) for c in self.choices].index(encoded)]
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> dict[str, Any]:
        if self.kind == "choice":
            described: dict[str, Any] = {"choices": list(self.choices)}
            if self.branches:
                described["branches"] = {k: [p.describe() for p in v] for k, v in self.branches.items()}
            return {"path": self.path, **described}
        return {"path": self.path, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}


@dataclass(frozen=True)
class Space:
    """The parameters of a search, and the config (as the user wrote it) trials start from."""

    params: tuple[Param, ...]
    base: dict[str, Any]
    defaults: dict[str, Any] = field(default_factory=dict)  # the base with every default written

    def sample(self, trial: Any) -> list[Override]:
        """The trial's values, path by path, parents before the parameters they enable."""
        chosen: list[Override] = []
        _sample(self.params, trial, chosen)
        return chosen

    def config(self, overrides: list[Override]) -> dict[str, Any]:
        """The base config with these values set."""
        return apply_overrides(self.base, overrides, self.defaults)

    def fingerprint(self) -> str:
        """A digest of the space and the base config: a study belongs to exactly one of them."""
        text = json.dumps({"params": [p.describe() for p in self.params], "base": self.base}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def current(self) -> dict[str, Any]:
        """The values the config has now, by the study's names, for the parameters (outside
        branches) whose current value lies in their range: the first trial of a new study, so
        the search starts from the untuned config and shows what tuning adds to it."""
        values: dict[str, Any] = {}
        for param in self.params:
            value = _lookup(self.defaults, param.path)
            if param.kind == "choice" and any(_encode(value) == _encode(c) for c in param.choices):
                values[param.name] = _encode(value)
            elif param.kind != "choice" and isinstance(value, (int, float)) and param.low <= value <= param.high \
                    and param.step is None:
                values[param.name] = value
        return values

    def walk(self) -> Iterator[tuple[Param, list[Override]]]:
        """Every parameter with the choices that enable it."""
        yield from _walk(self.params, [])


def build_space(config: PipelineConfig, features: Any = None) -> Space:
    """The config's ``tune.space``, or the built-in space of its model type(s), parsed and
    checked against the config. ``features`` (unfitted) say which candidates ``auto`` would fit."""
    base = config.model_dump(mode="json", exclude_unset=True)
    base.pop("tune", None)
    written = config.tune.space
    if not written:
        base, written = _default_space(config, base, features)
    params = tuple(_parse(written, prefix="", where="tune.space"))
    defaults = parse_config(base).model_dump(mode="json")
    defaults.pop("tune", None)
    space = Space(params, base, defaults)
    check_space(space)
    return space


def apply_overrides(base: Mapping[str, Any], overrides: list[Override],
                    defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``base`` with each path set. A section ``base`` leaves out is first copied
    from ``defaults`` (the same config with every default written), so that setting
    ``training.optimizer.lr`` keeps the optimizer's type. Setting a section's ``type`` to
    another type starts that section afresh (``model.type: gbdt`` keeps no mlp keys)."""
    config = copy.deepcopy(dict(base))
    for path, value in overrides:
        *parents, last = path.split(".")
        node: Any = config
        default: Any = defaults
        for part in parents:
            default = _child(default, part, path) if isinstance(default, (dict, list)) else None
            if isinstance(node, dict) and part not in node:
                node[part] = copy.deepcopy(default) if isinstance(default, dict) else {}
            node = _child(node, part, path)
            if isinstance(node, dict) and isinstance(default, dict) and node.get("type") != default.get("type"):
                default = None  # another type than the defaults': none of its defaults hold
        if isinstance(node, list):
            node[_index(node, last, path)] = copy.deepcopy(value)
        elif last == "type" and node.get("type") != value:
            node.clear()
            node["type"] = value
        else:
            node[last] = copy.deepcopy(value)
    return config


def check_space(space: Space) -> None:
    """Every path exists in the config (with its branch taken), every range is a range, and
    both ends of each (every choice) are values the config accepts."""
    if not space.params:
        raise ConfigError("the search space is empty: the model type has no built-in space; name the "
                          "parameters to search under tune.space", path="tune.space")
    for param, context in space.walk():
        where = "tune.space." + param.name.replace("=", ".").replace("/", ".")  # as nested in the YAML
        full = _validated(space, context, where, "with the choices it depends on").model_dump(mode="json")
        _find(full, param.path, where)
        for label, value in _ends(param):
            _validated(space, context + [(param.path, value)], where, f"at {label} {value!r}")


# ------------------------------------------------------------------ parsing


def _parse(written: Mapping[str, Any], *, prefix: str, where: str) -> Iterator[Param]:
    for path, spec in written.items():
        if not isinstance(path, str) or not path:
            raise ConfigError(f"a search-space key must be a config path such as model.leaves, got {path!r}",
                              path=where)
        name = f"{prefix}{path}"
        if isinstance(spec, Mapping) and spec and not set(spec) & set(SPEC_KEYS) and _all_spaces(spec):
            branches = {str(choice): tuple(_parse(sub or {}, prefix=f"{name}={choice}/", where=f"{where}.{path}"))
                        for choice, sub in spec.items()}
            yield Param(path, name, "choice", choices=tuple(spec), branches=branches)
        else:
            yield _range(path, name, spec, f"{where}.{path}")


def _all_spaces(spec: Mapping[str, Any]) -> bool:
    return all(sub is None or isinstance(sub, Mapping) for sub in spec.values())


def _range(path: str, name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"expected a range such as {{low: 0.001, high: 0.1, log: true}} or {{choices: [...]}}, "
                          f"got {spec!r}", path=where)
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}{did_you_mean(str(unknown[0]), SPEC_KEYS)}; valid: "
                          f"{', '.join(SPEC_KEYS)}", path=where)
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"}:
            raise ConfigError("choices cannot be combined with low, high, log or step", path=where)
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"choices must be a non-empty list, got {choices!r}", path=where)
        if len({_encode(c) for c in choices}) < len(choices):
            raise ConfigError(f"choices are listed twice in {choices!r}", path=where)
        return Param(path, name, "choice", choices=tuple(choices))
    return _numeric(path, name, spec, where)


def _numeric(path: str, name: str, spec: Mapping[str, Any], where: str) -> Param:
    if "low" not in spec or "high" not in spec:
        raise ConfigError("a range needs both low and high (or choices)", path=where)
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for label, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ConfigError(f"{label} must be a finite number, got {value!r}", path=where)
    if not isinstance(log, bool):
        raise ConfigError(f"log must be true or false, got {log!r}", path=where)
    if low == high:
        raise ConfigError(f"the range is empty (low = high = {low!r}); widen it, or set the value in the config "
                          "instead of searching it", path=where)
    if low > high:
        raise ConfigError(f"the range is inverted (low {low!r} > high {high!r}); swap them", path=where)
    if log and low <= 0:
        raise ConfigError(f"a log range needs low > 0, got {low!r}", path=where)
    if step is not None and (log or step <= 0 or step > high - low):
        raise ConfigError(f"step must be above 0 and at most high - low, and cannot go with log (got {step!r})",
                          path=where)
    whole = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
    return Param(path, name, "int" if whole else "float", low=low, high=high, log=log, step=step)


def _sample(params: tuple[Param, ...], trial: Any, chosen: list[Override]) -> None:
    for param in params:
        value = param.suggest(trial)
        chosen.append((param.path, value))
        if param.branches:
            _sample(param.branches[str(value)], trial, chosen)


def _walk(params: tuple[Param, ...], context: list[Override]) -> Iterator[tuple[Param, list[Override]]]:
    for param in params:
        yield param, context
        for choice, children in param.branches.items():
            value = next(c for c in param.choices if str(c) == choice)
            yield from _walk(children, context + [(param.path, value)])


def _ends(param: Param) -> list[tuple[str, Any]]:
    if param.kind == "choice":
        return [("choice", c) for c in param.choices]
    cast = int if param.kind == "int" else float
    return [("low", cast(param.low)), ("high", cast(param.high))]


def _encode(value: Any) -> Any:
    """Optuna keeps None, booleans, numbers and strings as choices; lists go in as JSON."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


# ------------------------------------------------------------------ the config side


def _default_space(config: PipelineConfig, base: dict[str, Any], features: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The built-in space: the model type's own; an ensemble's is each member's under
    ``model.members.<i>``, training settings once; ``auto`` is searched as the ensemble of the
    candidates it would fit on these columns."""
    model = config.model
    if isinstance(model, AutoModelConfig):
        from modelmill.models.ensemble import suitable_candidates

        from modelmill.features import build_target

        names = model.candidates or suitable_candidates(features or [], build_target(config))
        members = [candidate_config(n).model_dump(mode="json", exclude_unset=True) | {"type": candidate_config(n).type}
                   for n in names]
        base = {**base, "model": {"type": "ensemble", "members": members, "folds": model.folds,
                                  "selection_rounds": model.selection_rounds}}
    model_dict = base.get("model", {"type": "mlp"})
    if model_dict.get("type") != "ensemble":
        return base, dict(DEFAULT_SPACES.get(str(model_dict.get("type", "mlp")), {}))
    # members share the training section, whose best settings differ by member (an mlp's
    # learning rate is not a linear model's): only the members' own settings are searched
    space = {f"model.members.{i}.{path.removeprefix('model.')}": spec
             for i, member in enumerate(model_dict["members"])
             for path, spec in DEFAULT_SPACES.get(member["type"], {}).items() if path.startswith("model.")}
    return base, space


def _validated(space: Space, overrides: list[Override], where: str, how: str) -> PipelineConfig:
    try:
        return parse_config(space.config(overrides), origin="the searched config")
    except ModelmillError as exc:
        raise ConfigError(f"the config refuses this search space {how}: {exc}", path=where) from None


def _find(full: dict[str, Any], path: str, where: str) -> None:
    node, missed = _descend(full, path)
    if missed is None:
        return
    part = path.split(".")[missed]
    above = ".".join(path.split(".")[:missed]) or "the config"
    keys = [str(i) for i in range(len(node))] if isinstance(node, list) else \
        sorted(node) if isinstance(node, dict) else []
    hint = did_you_mean(part, keys)
    listing = f"; keys of {above}: {', '.join(keys)}" if keys else f"; {above} has no keys below it"
    raise ConfigError(f"no config key {path!r}: {part!r} is not a key of {above}{hint}{listing}", path=where)


def _lookup(config: Any, path: str) -> Any:
    """The value at ``path``, or None where the config has no such key."""
    node, missed = _descend(config, path)
    return None if missed is not None else node


def _descend(config: Any, path: str) -> tuple[Any, int | None]:
    """The value at a dotted path (list positions as numbers), or the node where the path
    left the config and the position of the part that was not there."""
    node = config
    for depth, part in enumerate(path.split(".")):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return node, depth
    return node, None


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    return node.get(part)


def _index(node: list[Any], part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{part!r} is not a position of the list at {path!r} (0 to {len(node) - 1})",
                          path=f"tune.space.{path}")
    return int(part)
