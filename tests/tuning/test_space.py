"""Search spaces: parsing, conditional branches, the built-in spaces, and the errors of a
wrong space (each names the path and says how to fix it) raised before any trial."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from modelmill.config import parse_config
from modelmill.errors import ConfigError
from modelmill.features import build_features
from modelmill.tuning import apply_overrides, build_space
from tests.conftest import base_config

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}, {"name": "flag", "type": "binary"}]


def config_with(space: dict[str, Any], **overrides: Any) -> Any:
    return parse_config(base_config(features=TABLE, tune={"space": space}, **overrides))


def space_of(space: dict[str, Any], **overrides: Any) -> Any:
    config = config_with(space, **overrides)
    return build_space(config, build_features(config))


CONDITIONAL = {
    "model.type": {
        "gbdt": {"model.leaves": {"low": 4, "high": 64, "log": True}, "model.learning_rate": {"low": 0.01, "high": 0.3}},
        "mlp": {"model.dropout": {"low": 0.0, "high": 0.5}, "model.hidden": {"choices": [[8], [16, 8]]},
                "training.optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        "linear": None,
    },
    "training.seed": {"choices": [0, 1]},
}


def test_conditional_space_samples_only_valid_configs() -> None:
    space = space_of(CONDITIONAL)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        overrides = space.sample(trial)
        config = parse_config(space.config(overrides))  # every sampled config is a valid config
        model = config.model
        seen.add(model.type)
        names = set(trial.params)
        assert names >= {"model.type", "training.seed"}
        branch = {n for n in names if n.startswith("model.type=")}
        assert all(n.startswith(f"model.type={model.type}/") for n in branch)  # only the chosen branch's
        if model.type == "gbdt":
            assert 4 <= model.leaves <= 64 and 0.01 <= model.learning_rate <= 0.3
            assert len(branch) == 2
        elif model.type == "mlp":
            assert model.hidden in ([8], [16, 8]) and 0 <= model.dropout <= 0.5
            assert 1e-4 <= config.training.optimizer.lr <= 1e-2
            assert len(branch) == 3
        else:
            assert not branch
        study.tell(trial, 0.5)
    assert seen == {"gbdt", "mlp", "linear"}


def test_switching_the_model_type_starts_the_section_afresh() -> None:
    base = {"model": {"type": "mlp", "hidden": [16]}, "training": {"epochs": 5}}
    changed = apply_overrides(base, [("model.type", "gbdt"), ("model.leaves", 7)])
    assert changed["model"] == {"type": "gbdt", "leaves": 7}
    assert base["model"] == {"type": "mlp", "hidden": [16]}  # the base is not touched
    kept = apply_overrides(base, [("model.type", "mlp"), ("model.dropout", 0.2)])
    assert kept["model"] == {"type": "mlp", "hidden": [16], "dropout": 0.2}


def test_a_section_left_out_keeps_its_default_type() -> None:
    space = space_of({"training.optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    config = parse_config(space.config([("training.optimizer.lr", 0.003)]))
    assert config.training.optimizer.type == "adamw" and config.training.optimizer.lr == 0.003


def test_built_in_spaces_per_model_type() -> None:
    gbdt = space_of({}, model={"type": "gbdt"})
    assert [p.path for p in gbdt.params] == ["model.learning_rate", "model.leaves", "model.min_child_samples",
                                            "model.feature_fraction"]
    assert gbdt.current() == {"model.learning_rate": 0.05, "model.leaves": 31, "model.min_child_samples": 20,
                              "model.feature_fraction": 0.8}  # the first trial is the untuned config
    mlp = space_of({}, model={"type": "mlp", "hidden": [256, 128]})
    assert "training.optimizer.lr" in {p.path for p in mlp.params}
    auto = space_of({}, model={"type": "auto"})
    assert auto.base["model"]["type"] == "ensemble"  # auto is searched as the ensemble of its candidates
    members = [m["type"] for m in auto.base["model"]["members"]]
    assert members == ["gbdt", "gbdt", "gbdt", "linear", "mlp"]
    paths = {p.path for p in auto.params}
    assert "model.members.0.leaves" in paths and "model.members.4.dropout" in paths
    assert not any(p.startswith("training.") for p in paths)
    assert auto.current()["model.members.2.learning_rate"] == 0.03  # gbdt_slow's own setting


def test_linear_model_without_searchable_model_keys_uses_training_keys() -> None:
    space = space_of({}, model={"type": "linear"})
    assert {p.path for p in space.params} == {"training.optimizer.lr", "training.l2"}


@pytest.mark.parametrize("space,fragments", [
    ({"model.hiden": {"choices": [[8]]}}, ["tune.space.model.hiden", "'hiden' is not a key of model",
                                           "did you mean 'hidden'?"]),
    ({"trainig.epochs": {"low": 1, "high": 5}}, ["tune.space.trainig.epochs", "did you mean 'training'?"]),
    ({"model.dropout": {"low": 0.3, "high": 0.3}}, ["tune.space.model.dropout", "the range is empty"]),
    ({"model.dropout": {"low": 0.5, "high": 0.1}}, ["tune.space.model.dropout", "inverted", "swap them"]),
    ({"model.dropout": {"low": 0.0, "high": 1.5}}, ["tune.space.model.dropout", "at high 1.5"]),
    ({"training.optimizer.lr": {"low": 0.0, "high": 0.1, "log": True}}, ["log range needs low > 0"]),
    ({"model.hidden": {"choices": []}}, ["choices must be a non-empty list"]),
    ({"model.dropout": {"lo": 0.1, "high": 0.2}}, ["unknown key 'lo'", "did you mean 'low'?"]),
    ({"model.type": {"gbdt": {"model.dropout": {"low": 0.0, "high": 0.5}}}},
     ["tune.space.model.type.gbdt.model.dropout", "'dropout' is not a key of model"]),
    ({"model.type": {"gbdtt": None}}, ["tune.space.model.type", "gbdtt", "did you mean 'gbdt'?"]),
])
def test_bad_spaces_are_clear_errors(space: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        space_of(space)
    message = " ".join(str(caught.value).split())
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_model_type_with_no_built_in_space_asks_for_one() -> None:
    with pytest.raises(ConfigError, match="the search space is empty"):
        space_of({}, model={"type": "ensemble", "members": [{"type": "linear"}]})
