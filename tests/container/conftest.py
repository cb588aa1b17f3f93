"""A small trained tabular bundle (no text feature, so no tokenizer) for the container tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import base_config, make_frame

TABULAR_FEATURES = [
    {"name": "x", "type": "number"},
    {"name": "colour", "type": "category"},
    {"name": "flag", "type": "binary"},
    {"name": "when", "type": "date"},
]


def tabular_record(**changes: object) -> dict[str, object]:
    return {"x": 0.5, "colour": "red", "flag": "yes", "when": "2021-03-04", **changes}


@pytest.fixture(scope="session")
def tabular_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelmill.api import Pipeline

    config = base_config(name="tiny-tabular", features=TABULAR_FEATURES,
                         training={"epochs": 2, "batch_size": 64, "progress": False, "seed": 0})
    return Pipeline(config).fit(make_frame(rows=300)).save(tmp_path_factory.mktemp("container") / "bundle")
