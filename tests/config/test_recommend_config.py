"""The `task: recommend` config: its checks, and the recommender's training defaults laid under
the keys a config gives."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from modelmill.config import RecommendConfig, dump_config, parse_task_config
from modelmill.config.recommend import recommend_training
from modelmill.errors import ConfigError


def raw(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"task": "recommend", "name": "shop", "data": {"source": "orders.csv"},
                            "interactions": {"user": "customer", "item": "sku"}}
    return {**base, **changes}


def test_defaults_round_trip_through_yaml() -> None:
    config = parse_task_config(raw())
    assert isinstance(config, RecommendConfig)
    assert parse_task_config(yaml.safe_load(dump_config(config))) == config


@pytest.mark.parametrize(("training", "expected"), [
    ({"epochs": 5}, {"epochs": 5, "lr": recommend_training().optimizer.lr}),
    ({"optimizer": {"lr": 0.02}}, {"epochs": recommend_training().epochs, "lr": 0.02}),
])
def test_training_keys_given_are_laid_over_the_recommenders_defaults(training: dict[str, Any],
                                                                      expected: dict[str, Any]) -> None:
    config = parse_task_config(raw(training=training))
    assert config.training.epochs == expected["epochs"]
    assert config.training.optimizer.lr == expected["lr"]
    assert config.training.batch_size == recommend_training().batch_size  # not the tabular default
    assert config.training.optimizer.weight_decay == recommend_training().optimizer.weight_decay


def test_an_optimizer_of_another_type_replaces_ours() -> None:
    config = parse_task_config(raw(training={"optimizer": {"type": "sgd", "lr": 0.1}}))
    assert config.training.optimizer.type == "sgd" and config.training.optimizer.lr == 0.1


@pytest.mark.parametrize("negatives", ["all", "auto", 5])
def test_negatives_take_a_count_or_all(negatives: int | str) -> None:
    config = parse_task_config(raw(model={"type": "two_tower", "negatives": negatives}))
    assert config.model.negatives == negatives  # type: ignore[union-attr]


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": {"type": "two_tower", "negatives": 0}}, "model.negatives"),
    ({"data": {"source": "orders.csv", "split": {"method": "random"}}}, "never on a split of rows"),
    ({"interactions": {"user": "customer", "item": "customer"}}, "already the user column"),
    ({"interactions": {"user": "customer", "item": "sku", "min_rating": 4}}, "min_rating needs a rating column"),
    ({"holdout": {"test": 0.5, "valid": 0.45}}, "leaves too little to train on"),
    ({"evaluation": {"k": [0]}}, "between 1 and 1000"),
    ({"model": {"type": "als"}}, "valid: auto, ease, popularity, two_tower"),
])
def test_bad_settings_are_clear_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_task_config(raw(**changes))


def test_a_training_object_from_python_keeps_the_recommenders_other_defaults() -> None:
    from modelmill.config.schema import TrainingConfig

    config = RecommendConfig.model_validate({**raw(), "training": TrainingConfig(epochs=5)})
    assert config.training.epochs == 5
    assert config.training.batch_size == recommend_training().batch_size
    assert config.training.optimizer == recommend_training().optimizer
