"""A small trained model for the prediction-log tests: the serving tests' pipeline with its
free-text column marked as personal data (``pii: true``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelmill.api import Pipeline
from tests.conftest import base_config, make_frame

PII_KEY = "a-secret-hmac-key-for-tests-0123"


def pii_config(seed: int = 1) -> dict[str, Any]:
    config = base_config(training={"epochs": 2, "batch_size": 64, "progress": False, "seed": seed})
    for feature in config["features"]:
        if feature["name"] == "review":
            feature["pii"] = True
    return config


@pytest.fixture(scope="session")
def pii_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of versions (1/) of the model with a personal-data column."""
    root = tmp_path_factory.mktemp("pii-models")
    Pipeline(pii_config()).fit(make_frame(rows=300, seed=1)).save(root / "1")
    return root
