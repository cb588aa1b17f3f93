"""A real MLflow tracking server on loopback for the tracking and registry tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mlflow_server import MlflowServer, mlflow_server


@pytest.fixture(scope="module")
def tracking_server() -> Iterator[MlflowServer]:
    """One server per test module (every test names its own experiment or registered model)."""
    with mlflow_server() as server:
        yield server


@pytest.fixture
def own_tracking_server() -> Iterator[MlflowServer]:
    """A server of the test's own, which it may stop and start again."""
    with mlflow_server() as server:
        yield server
