"""A real Ray cluster for the tests: a head and a second node, two `ray start` processes on
this machine, shared by the whole test session (all pytest-xdist workers) and stopped by the
last worker to finish with it.

Both nodes follow what modelmill's own clusters do (``modelmill.cluster``): every server on
loopback, token authentication, no dashboard; each node has small memory limits.

The second node joins through a small wrapper around Ray's own ``ray start``: Ray rewrites
the loopback address 127.0.0.1, wherever a joining node is given it, to the machine's
outward address (ray-project/ray#59110), where a head bound to loopback does not listen.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelmill.cluster import secure_local_environment

RAY = Path(sys.executable).with_name("ray")
NODE_CPUS = 2  # logical CPUs per node: enough for two training workers, or four trials at once
NODE_MEMORY = 1_500_000_000  # bytes of the `memory` resource each node offers to tasks
OBJECT_STORE = 200_000_000  # bytes of shared memory per node
_JOIN = ("import sys, ray._private.services as services; "
         "services.resolve_ip_for_localhost = lambda host: host; "  # keep 127.0.0.1 (ray-project/ray#59110)
         "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()")


@dataclass
class TestCluster:
    __test__ = False  # a cluster, not a test class
    address: str
    environment: dict[str, str]  # what a process needs to join it (the token, loopback only)
    folder: Path
    head_pid: int
    node_pid: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _all_cores() -> None:
    """Ray's processes may run on every core (a pytest-xdist worker is pinned to one)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def _start(folder: Path) -> TestCluster:
    environment = {**os.environ}
    secure = secure_local_environment(environment)
    token = folder / "token"
    token.write_text(environment.pop("RAY_AUTH_TOKEN", "") or Path(environment["RAY_AUTH_TOKEN_PATH"]).read_text())
    token.chmod(0o600)
    environment["RAY_AUTH_TOKEN_PATH"] = str(token)
    secure = {**{k: v for k, v in secure.items() if k != "RAY_AUTH_TOKEN"}, "RAY_AUTH_TOKEN_PATH": str(token)}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", str(NODE_CPUS), "--memory", str(NODE_MEMORY), "--object-store-memory",
              str(OBJECT_STORE), "--disable-usage-stats", "--block"]
    logs = open(folder / "nodes.log", "ab")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--include-dashboard", "false", "--temp-dir", str(folder / "ray"), "--ray-client-server-port",
         str(_free_port()), *common],
        env=environment, stdout=logs, stderr=logs, preexec_fn=_all_cores, start_new_session=True)
    try:
        _wait_for_port(port, head, folder)
    except BaseException:
        _stop(TestCluster(address, secure, folder, head.pid, head.pid))
        raise
    joining = {**environment, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}  # may join; addresses kept by _JOIN
    node = subprocess.Popen(
        [sys.executable, "-c", _JOIN, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common],
        env=joining, stdout=logs, stderr=logs, preexec_fn=_all_cores, start_new_session=True)
    cluster = TestCluster(address, secure, folder, head.pid, node.pid)
    try:
        _wait_for_nodes(cluster, 2)
    except BaseException:
        _stop(cluster)  # never a half-started cluster left running
        raise
    return cluster


def _wait_for_port(port: int, process: subprocess.Popen[bytes], folder: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Ray head exited: see {folder / 'nodes.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the Ray head did not listen on port {port} within {timeout:.0f} s")


def _wait_for_nodes(cluster: TestCluster, count: int, timeout: float = 90) -> None:
    """Until the cluster reports ``count`` live nodes (asked by `ray status`-like driver code
    in a subprocess, so this process stays unconnected)."""
    probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); "
             "print(sum(1 for n in ray.nodes() if n['Alive']))")
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        done = subprocess.run([sys.executable, "-c", probe, cluster.address], env={**os.environ, **cluster.environment},
                              capture_output=True, text=True, timeout=60)
        seen = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
        if seen.isdigit() and int(seen) >= count:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray cluster at {cluster.address} did not reach {count} nodes: {seen}")


def _stop(cluster: TestCluster) -> None:
    """SIGTERM to each `ray start --block`, then SIGKILL to what is left of its process group."""
    for pid in (cluster.node_pid, cluster.head_pid):
        try:
            os.killpg(pid, 15)
        except ProcessLookupError:
            continue
    # one short wait for both, then SIGKILL to each whole process group: `ray start --block` stops
    # its node's processes one after another, each with a grace of its own (over 8 s here), and
    # nothing of a test cluster needs that clean-up (its folder goes right after; the workers exit
    # when their raylet does)
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and any(_alive(pid) for pid in (cluster.node_pid, cluster.head_pid)):
        time.sleep(0.2)
    for pid in (cluster.node_pid, cluster.head_pid):
        try:  # the group, even where its leader has exited: its raylet or GCS may still be stopping
            os.killpg(pid, 9)
        except ProcessLookupError:
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # another worker's child: alive unless a zombie
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except ProcessLookupError:
        return False
    return waited == 0


@contextmanager
def shared_cluster() -> Iterator[TestCluster]:
    """The session's cluster: the first worker starts it, the last one to leave stops it."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"solo-{os.getpid()}"
    folder = Path(tempfile.gettempdir()) / f"mm-ray-{run[:12]}"
    folder.mkdir(exist_ok=True)
    state_file = folder / "state.json"
    with open(folder / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(state_file.read_text()) if state_file.exists() else None
            if state is None:
                cluster = _start(folder)
                state = {"cluster": cluster.__dict__ | {"folder": str(folder)}, "users": 0}
            state["users"] += 1
            state_file.write_text(json.dumps(state))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    cluster = TestCluster(**{**state["cluster"], "folder": Path(state["cluster"]["folder"])})
    try:
        yield cluster
    finally:
        with open(folder / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(state_file.read_text())
                state["users"] -= 1
                if state["users"] <= 0:
                    _stop(cluster)
                    state_file.unlink()
                    # the token, the session's logs and spilled objects; the lock file stays, for a
                    # worker that may be waiting on it to start a fresh cluster
                    for left in folder.iterdir():
                        if left.name != "lock":
                            shutil.rmtree(left) if left.is_dir() else left.unlink(missing_ok=True)
                else:
                    state_file.write_text(json.dumps(state))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
