"""Connecting to a cluster: the shared test cluster, a private one, and what goes wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from modelmill.cluster import ClusterError, connect
from tests.ray_cluster import TestCluster


def _listening(pids: set[int]) -> list[str]:
    """Every address a process of ``pids`` (and its children) listens on."""
    processes = []
    for pid in pids:
        parent = psutil.Process(pid)
        processes += [parent, *parent.children(recursive=True)]
    owned = {p.pid for p in processes}
    return sorted({f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.net_connections("inet")
                   if c.status == psutil.CONN_LISTEN and c.pid in owned})


def test_the_test_cluster_has_two_nodes_on_loopback_with_a_token(ray_cluster: TestCluster) -> None:
    ray = connect()
    assert sum(1 for node in ray.nodes() if node["Alive"]) == 2
    addresses = _listening({ray_cluster.head_pid, ray_cluster.node_pid})
    assert addresses, "the cluster listens nowhere?"
    outside = [a for a in addresses if not a.startswith(("127.0.0.1:", "::ffff:127.0.0.1:", "::1:"))]
    assert not outside, f"listening beyond loopback: {outside}"
    assert not any(a.endswith(":8265") for a in addresses), "the dashboard is running"
    assert ray_cluster.environment["RAY_AUTH_MODE"] == "token"


@pytest.mark.parametrize("token", [None, "0" * 64], ids=["missing", "wrong"])
def test_a_driver_without_the_token_is_refused(ray_cluster: TestCluster, token: str | None) -> None:
    probe = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); print('joined')"
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    if token is not None:  # a token, but not the cluster's
        environment.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    # Ray retries a refused connection 20 times, a second apart: 3 show the refusal as well
    environment["RAY_NUM_REDIS_GET_RETRIES"] = "3"
    done = subprocess.run([sys.executable, "-c", probe, ray_cluster.address], env=environment,
                          capture_output=True, text=True, timeout=120)
    assert "joined" not in done.stdout
    assert done.returncode != 0
    assert "InvalidAuthToken" in done.stderr, done.stderr[-2000:]  # refused for the token, not for anything else


def test_no_cluster_at_the_address_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClusterError, match=rf"no Ray cluster answers at 127.0.0.1:{port} \(--address\)"):
        connect(f"127.0.0.1:{port}")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ClusterError, match=rf"127.0.0.1:{port} \(RAY_ADDRESS\).*ray start --head"):
        connect()


def test_a_malformed_address_is_refused() -> None:
    with pytest.raises(ClusterError, match="not a Ray address; write it as host:port"):
        connect("nowhere")
    with pytest.raises(ClusterError, match="Ray Client address"):
        connect("ray://127.0.0.1:10001")
