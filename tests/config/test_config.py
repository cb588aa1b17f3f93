"""The config tree: defaults, YAML round trips, and errors that name the path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelmill.config import dump_config, load_config, parse_config
from modelmill.errors import ConfigError
from tests.conftest import base_config


def test_defaults_are_filled_and_round_trip(tmp_path: Path) -> None:
    config = parse_config(base_config())
    assert config.training.optimizer.type == "adamw"
    text = dump_config(config)
    assert "weight_decay" in text and "patience" in text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path) == config


def test_unknown_key_names_path_and_close_match() -> None:
    raw = base_config(training={"optimiser": {"type": "adam"}})
    with pytest.raises(ConfigError, match=r"training\.optimiser: unknown key 'optimiser' \(did you mean 'optimizer'\?\)"):
        parse_config(raw)


def test_unknown_type_lists_valid_ones() -> None:
    raw = base_config(model={"type": "mlpp"})
    with pytest.raises(ConfigError, match=r"model\.type: unknown type 'mlpp' \(did you mean 'mlp'\?\); valid: linear, mlp"):
        parse_config(raw)


def test_nested_feature_error_has_index_path() -> None:
    raw = base_config()
    raw["features"][1]["encoding"] = "one-hot"
    with pytest.raises(ConfigError, match=r"features\[1\]\.encoding: got 'one-hot' \(did you mean 'onehot'\?\)"):
        parse_config(raw)


def test_wrong_value_names_path_and_value() -> None:
    raw = base_config(training={"optimizer": {"type": "sgd", "lr": -0.1}})
    with pytest.raises(ConfigError, match=r"training\.optimizer\.lr: .*greater than 0.*-0\.1"):
        parse_config(raw)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_target_listed_as_feature_is_rejected() -> None:
    raw = base_config()
    raw["features"].append({"name": "label", "type": "category"})
    with pytest.raises(ConfigError, match="also listed as a feature"):
        parse_config(raw)
    yaml.safe_dump(raw)
