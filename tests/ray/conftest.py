"""The Ray tests share one real cluster (a head and a second node on loopback, token
authentication, no dashboard): see tests/ray_cluster.py."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from tests.ray_cluster import TestCluster, shared_cluster

if importlib.util.find_spec("ray") is None:  # not imported here: Ray reads its settings at import
    pytest.skip("the ray extra is not installed (pip install 'modelmill[ray]')", allow_module_level=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[TestCluster]:
    """The cluster, with this process's environment pointing at it (RAY_ADDRESS, the token)."""
    with shared_cluster() as cluster:
        saved = {name: os.environ.get(name) for name in (*cluster.environment, "RAY_ADDRESS")}
        os.environ.update(cluster.environment)
        os.environ["RAY_ADDRESS"] = cluster.address
        try:
            yield cluster
        finally:
            from modelmill.cluster import disconnect

            disconnect()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
