"""The ray backend's storage setting is checked before any cluster is reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelmill.config.schema import TrainingConfig
from modelmill.errors import ConfigError
from modelmill.training.ray_backend import _storage


def test_a_storage_uri_nothing_can_open_is_a_clear_error() -> None:
    config = TrainingConfig(backend="ray", storage="nosuch://bucket/prefix")
    with pytest.raises(ConfigError, match=r"training.storage: 'nosuch://bucket/prefix' cannot be opened.*Fix:"):
        _storage(config, None)


def test_a_relative_storage_path_is_taken_from_the_working_directory(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _storage(TrainingConfig(backend="ray", storage="ckpts"), None) == str(tmp_path.resolve() / "ckpts")
    assert _storage(TrainingConfig(backend="ray", storage="file:///tmp/x"), None) == "file:///tmp/x"
    assert _storage(TrainingConfig(backend="ray"), tmp_path / "run" / "checkpoints" / "last.safetensors") \
        == str((tmp_path / "run" / "checkpoints" / "ray").resolve())


def test_an_empty_storage_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 character"):
        TrainingConfig(backend="ray", storage="")
