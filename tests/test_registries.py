"""Each registry binds an implementation to its config class, and the config's union of
``type:`` choices lists exactly the registered types: the two cannot drift apart."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from modelmill.config.models import ModelConfig
from modelmill.config.schema import FeatureConfig, TargetConfig
from modelmill.features import FEATURES, TARGETS
from modelmill.models import MODELS
from modelmill.registry import Registry


def union_members(annotated: Any) -> dict[str, type[Any]]:
    """``type:`` tag → config class of a discriminated union."""
    union = typing.get_args(annotated)[0]
    return {member.model_fields["type"].default: member for member in typing.get_args(union)}


@pytest.mark.parametrize("registry,union", [(FEATURES, FeatureConfig), (TARGETS, TargetConfig),
                                            (MODELS, ModelConfig)], ids=["features", "targets", "models"])
def test_every_registered_type_has_exactly_its_config_class_in_the_union(registry: Registry[Any],
                                                                         union: Any) -> None:
    members = union_members(union)
    assert sorted(members) == registry.names(), "the config union and the registry list different types"
    assert registry.configs() == members, "a registered type is bound to another config class than the union's"
    for name in registry.names():
        implementation = registry.get(name)
        generic = typing.get_args(next(base for base in implementation.__orig_bases__))  # type: ignore[attr-defined]
        assert generic == (registry.config_class(name),), f"{implementation.__name__} takes another config class"


def test_binding_a_config_class_of_another_type_is_an_error() -> None:
    registry: Registry[object] = Registry("thing")
    with pytest.raises(ValueError, match="bound to NumberFeatureConfig, whose type is 'number'"):
        registry.add("numeric", object(), config=typing.get_args(typing.get_args(FeatureConfig)[0])[0])


def test_a_swapped_entry_comes_back() -> None:
    original = MODELS.get("linear")
    with MODELS.swapped("linear", MODELS.get("mlp")):
        assert MODELS.get("linear") is MODELS.get("mlp")
    assert MODELS.get("linear") is original
