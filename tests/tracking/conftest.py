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


@pytest.fixture(autouse=True)
def _tracking_server_running(request: pytest.FixtureRequest) -> None:
    """A test that stopped the module's server (``own_tracking_server``) leaves it stopped: the
    next test that uses it finds it started again, on the same port and store."""
    if {"tracking_server", "own_tracking_server"} & set(request.fixturenames):
        server: MlflowServer = request.getfixturevalue("tracking_server")
        if not server.running():
            server.start()


@pytest.fixture
def own_tracking_server(tracking_server: MlflowServer) -> MlflowServer:
    """The module's server, running, for a test that may stop it and start it again (a server of
    its own would cost a start of its own; the test's runs are under its own experiment)."""
    return tracking_server
