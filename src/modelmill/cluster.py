"""Connecting to a Ray cluster: an existing one (``RAY_ADDRESS`` or an explicit address), or a
private one on this machine, started on demand.

Ray is an optional extra (``pip install 'modelmill[ray]'``), imported only here and only
when a cluster is asked for. A cluster modelmill starts itself follows the lesson of
ShadowRay (CVE-2023-48022: Ray's job API executes whatever code reaches it): every server
binds to the loopback interface only, callers must present a token (Ray's token
authentication), and the dashboard and its job API are not started. A cluster someone else
runs is theirs to secure: we connect with the token Ray itself reads from ``RAY_AUTH_TOKEN``
or ``RAY_AUTH_TOKEN_PATH``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
from typing import Any

from modelmill.errors import ConfigError

INSTALL_HINT = "pip install 'modelmill[ray]'"
ADDRESS_ENV = "RAY_ADDRESS"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
log = logging.getLogger("modelmill")
_lock = threading.Lock()
_OUR_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", LOOPBACK_ENV, "RAY_USAGE_STATS_ENABLED")
_saved_environment: dict[str, str | None] = {}  # their values before connect() changed them


class ClusterError(ConfigError):
    """No Ray cluster can be reached, or it refused us; names the address tried."""


def ray_module(what: str = "the ray backend") -> Any:
    """The ray module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{what} needs Ray, an optional extra. Fix: {INSTALL_HINT}") from None
    return ray


def secure_local_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    """The environment that makes Ray processes started from it bind to loopback only and ask
    for a token: ``RAY_AUTH_MODE=token`` with a fresh random token unless one is set.

    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is what makes Ray take 127.0.0.1 as the node's
    address (on Linux it otherwise picks the address of the default route, and binds its GCS
    and raylet on every interface); with the node address 127.0.0.1 its gRPC servers listen
    on loopback only. Returns the variables set (callers that start ``ray start`` processes
    pass them on)."""
    wanted = {"RAY_AUTH_MODE": "token", LOOPBACK_ENV: "0",
              "RAY_USAGE_STATS_ENABLED": "0"}
    if not environ.get("RAY_AUTH_TOKEN") and not environ.get("RAY_AUTH_TOKEN_PATH"):
        wanted["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    for name, value in wanted.items():
        environ[name] = value
    return {name: environ[name] for name in (*wanted, "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH") if name in environ}


def connect(address: str | None = None, *, what: str = "the ray backend", cpus: int | None = None) -> Any:
    """The ray module, connected: to ``address``, else to ``RAY_ADDRESS``, else to a private
    cluster started on this machine (loopback, token, no dashboard). Already connected: as is."""
    address = address or os.environ.get(ADDRESS_ENV) or None
    private = not address or address == "local"
    with _lock:
        imported = "ray" in sys.modules
        if not _saved_environment:  # what disconnect() puts back: the token is this cluster's only
            _saved_environment.update({name: os.environ.get(name) for name in _OUR_VARIABLES})
        if private:
            secure_local_environment()  # before Ray reads its settings (at import)
        elif _is_loopback(address or ""):
            os.environ[LOOPBACK_ENV] = "0"  # keep 127.0.0.1 as given: see _keep_loopback
        ray = ray_module(what)
        if imported and (private or _is_loopback(address or "")):
            _keep_loopback()
        if not private and address != "auto":  # auto: Ray finds the cluster this machine runs
            _check_address(address or "")
        if ray.is_initialized():
            return ray
        if private:
            if imported:
                _reload_auth_settings()
            _start_private(ray, cpus)
        else:
            _connect_existing(ray, address or "")
    return ray


def disconnect() -> None:
    """Leave the cluster (a private one stops with its driver), and put back the environment
    variables connecting changed, so that a private cluster's token never reaches another
    cluster or a later subprocess."""
    with _lock:
        try:
            import ray
        except ImportError:
            return
        if ray.is_initialized():
            ray.shutdown()
        for name, value in _saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _saved_environment.clear()


def _source(address: str) -> str:
    return ADDRESS_ENV if os.environ.get(ADDRESS_ENV) == address else "--address"


def _check_address(address: str) -> None:
    """A Ray GCS address that answers; else a clear error naming it and where it came from."""
    source = _source(address)
    fix = ("Fix: start one with `ray start --head` (and set RAY_ADDRESS to the address it prints), or unset "
           "RAY_ADDRESS to let modelmill start a private one on this machine")
    if address.startswith("ray://"):
        raise ClusterError(f"{address} ({source}) is a Ray Client address; modelmill joins a cluster as a driver. "
                           "Fix: run it on a node of the cluster and give the GCS address host:port")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{address!r} ({source}) is not a Ray address; write it as host:port (the GCS "
                           "address `ray start --head` prints)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as error:
        raise ClusterError(f"no Ray cluster answers at {address} ({source}): {error.strerror or error}. {fix}") \
            from None


def _connect_existing(ray: Any, address: str) -> None:
    source = _source(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        hint = ("; it may ask for a token: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the cluster's"
                if "auth" in str(error).lower() or "connect" in str(error).lower() else "")
        raise ClusterError(f"the Ray cluster at {address} ({source}) refused the connection{hint}: "
                           f"{' '.join(str(error).split())[:300]}") from None
    log.info(f"connected to the Ray cluster at {address}: {_describe(ray)}")


def _start_private(ray: Any, cpus: int | None) -> None:
    try:
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=cpus,
                 logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError, OSError) as error:
        raise ClusterError(f"a private Ray cluster could not start on this machine: "
                           f"{' '.join(str(error).split())[:300]}. Fix: see the Ray logs under /tmp/ray, or "
                           "point RAY_ADDRESS at a running cluster") from None
    log.info(f"started a private Ray cluster on this machine (loopback, token): {_describe(ray)}")


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _keep_loopback() -> None:
    """Ray, on Linux, rewrites 127.0.0.1 in an address to the machine's outward address
    (ray-project/ray#59110), where a cluster bound to loopback does not listen; the switch
    that stops it (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) is read when Ray is imported. Ray
    was imported before we could set it: set what it would have read."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _reload_auth_settings() -> None:
    """Ray read its settings when it was first imported, before we asked for a token: read
    them again (what Ray's own tests do between clusters)."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]  # compiled, no stubs

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _describe(ray: Any) -> str:
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return f"{nodes} node(s), {resources.get('CPU', 0):g} CPU(s)"
