"""``modelmill serve MODELS --engine ray --replicas N``: the same FastAPI app, run as the
replicas of a Ray Serve deployment.

Each replica is a Ray actor that builds the app exactly as a uvicorn worker does
(:func:`~modelmill.serving.server.load_state` then :func:`~modelmill.serving.app.create_app`),
so the HTTP contract, the limits, the timeouts and the micro-batching (our own batcher,
inside each replica) are the same code. Ray Serve adds what it is for: replicas placed on
the cluster, restarted when they fail, and its HTTP proxy routing requests among them.

What the replicas need and how they get it:

- **The model folder** is read by every replica at the path given (made absolute here): the
  replicas must run on this machine or see the folder on a shared filesystem.
- **A private folder of this machine** (``mkdtemp``: mode 0700, deleted when the command
  stops) is shared by the replicas, which must therefore run on this machine; a replica that
  cannot see it (another machine) refuses to start.
- **Secrets** (the admin token, API keys, the feedback token, the PII key, the encryption key
  or its file's path) are the ones in this command's environment, written to a file of mode
  0600 in that folder; a replica gets only the file's path, reads it when it starts, and puts
  them into its process's environment. Not as constructor arguments: Serve keeps those,
  cloudpickled, in the cluster's internal key-value store, which any job holding the
  cluster's token can read. Not through ``runtime_env.env_vars`` either: Ray's runtime-env
  agent writes runtime environments into its log files.
- **Admin reload and rollback** reach one replica; it writes its choice to a selection file
  in that folder, and the other replicas follow it within a second, as ``--workers`` do.

Ray is imported in functions only: it is an optional extra.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelmill.cluster import INSTALL_HINT, connect
from modelmill.config.serving import ServingConfig
from modelmill.errors import ConfigError, ServingError
from modelmill.serving.server import _check_port_free, _url_host, open_root, resolve_settings

log = logging.getLogger("modelmill.serving")
APPLICATION = "modelmill"  # the Serve application's name, unique on a cluster
REPLICA_HEADER = "x-modelmill-replica"  # which replica answered: for operators, and for the tests


@dataclass(frozen=True)
class Secrets:
    """Environment variables the service reads, as this command sees them (None: unset).
    Its repr names the variables only, never their values."""

    values: dict[str, str | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Secrets({sorted(name for name, value in self.values.items() if value is not None)})"

    def write(self, path: Path) -> None:
        """To a new file readable by this user only: created with mode 0600 (never widened
        by the umask, never an existing file or link followed), then written."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(self.values, file)

    @classmethod
    def read(cls, path: Path) -> Secrets:
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ServingError(f"this replica cannot read its secrets at {path} ({type(exc).__name__}): the "
                               "file `modelmill serve --engine ray` wrote for its replicas is gone or damaged. "
                               "Fix: restart the command") from None
        return cls({str(name): None if value is None else str(value) for name, value in values.items()})

    def install(self) -> None:
        """Into this (replica) process's environment: set ones set, unset ones removed, so a
        replica behaves as this command's environment says, not as the cluster's does."""
        for name, value in self.values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica is built from: plain data, shipped to the replicas by Ray."""

    path: str  # the model folder (absolute)
    overrides: dict[str, Any]  # the command line's settings, as for the uvicorn server
    selection: str  # the shared selection file of admin reloads (see module docstring)
    secrets: str  # the path of the secrets' file (mode 0600) in the same folder: never the secrets


def secret_names(settings: ServingConfig) -> list[str]:
    """The environment variables the service reads for secrets and keys."""
    from modelmill.encryption import KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT

    return [settings.admin_token_env, settings.api_keys_env, settings.log.feedback_token_env,
            settings.log.pii_key_env, KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT]


class ServedReplica:
    """One replica: our FastAPI app, built in the replica process when it starts (Serve calls
    ``__serve_build_asgi_app__`` after ``__init__``), because the app holds a loaded model and
    a running batcher that cannot travel from this process."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        self.state: Any = None
        shared = Path(spec.selection).parent
        if not shared.is_dir():
            raise ServingError(f"this replica cannot see {shared}, the private folder its replicas share (for "
                               "their secrets and admin reloads): it runs on another machine than `modelmill "
                               "serve`. Fix: run the replicas on the machine of the command (the model folder "
                               "must be there too)")
        Secrets.read(Path(spec.secrets)).install()

    def __serve_build_asgi_app__(self) -> Any:
        from ray import serve

        from modelmill.serving.app import create_app
        from modelmill.serving.server import load_state

        self.state = load_state(self.spec.path, self.spec.overrides, Path(self.spec.selection))
        app = create_app(self.state)
        replica = serve.get_replica_context().replica_id.unique_id
        app.add_middleware(_ReplicaHeader, replica=replica)  # type: ignore[arg-type]
        return app

    def check_health(self) -> None:
        """Serve's health check: a replica whose model thread died is replaced."""
        if self.state is not None and not self.state.batcher.alive:
            raise ServingError("the model thread of this replica stopped")


class _ReplicaHeader:
    """Pure ASGI middleware: ``X-Modelmill-Replica`` names the replica that answered."""

    def __init__(self, app: Callable[..., Any], replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_named)


def serve_replicas(path: str | Path, overrides: dict[str, Any], *, replicas: int,
                   announce: Callable[[str], None] | None = None) -> None:
    """Serve ``path`` on Ray Serve with ``replicas`` replicas until SIGTERM or Ctrl-C, then
    delete the application (each replica finishes its requests within ``grace_s``).

    Raises:
        ConfigError: Ray (or its Serve part) is not installed; the cluster cannot be reached
            (:class:`~modelmill.cluster.ClusterError`, naming the address); more replicas ×
            threads than the cluster's nodes have CPUs for.
        ServingError: an option that does not apply to Ray Serve, a taken port, Serve already
            running on this cluster at another address, or replicas that fail to start.
    """
    _refuse_workers(overrides, replicas)
    if str(path).startswith("models:") and not Path(path).exists():
        # each replica would fetch the version on its own node, where neither MLFLOW_TRACKING_URI nor the
        # credentials of this process are set: not done, rather than half done
        raise ServingError(f"--engine ray serves a bundle or a folder of versions, not a registered model ({path}). "
                           "Fix: serve it with --engine uvicorn, or fetch the version first (`modelmill serve` "
                           "keeps it in ~/.cache/modelmill/registry/) and serve that folder on Ray")
    opened = open_root(path)  # a wrong path or a broken bundle fails here, before any cluster
    if opened.bundle.task != "predict":
        raise ServingError(f"--engine ray serves `task: predict` models; version {opened.version!r} is a `task: "
                           f"{opened.bundle.task}` model. Fix: serve it with --engine uvicorn (--workers N for more "
                           "server processes)")
    settings = resolve_settings(opened.bundle.config().serving, overrides)
    _refuse_log_and_shadow(settings)
    _check_port_free(settings.host, settings.port)
    port = settings.port or _free_port(settings.host)
    threads = settings.threads if settings.threads != "auto" else 1
    if int(threads) < 1:
        raise ConfigError(f"--threads {threads}: each replica needs at least one thread. Fix: --threads 1 or more")
    shared = Path(tempfile.mkdtemp(prefix="modelmill-serve-"))  # private (0700)
    secrets = shared / "secrets.json"
    spec = ReplicaSpec(str(Path(path).resolve()), {**overrides, "port": port, "threads": threads},
                       str(shared / "selection.json"), str(secrets))
    try:
        ray = connect(what="serve --engine ray")  # first: it sets what Ray reads when imported
        _serve_module()
        _check_cpus(ray, replicas, int(threads))
        with _stop_signals() as stop:  # from here on: Ray's own handler would abort the process
            # written once a signal can no longer end the command before the finally removes it
            Secrets({name: os.environ.get(name) for name in secret_names(settings)}).write(secrets)
            started_serve = _start_serve(ray, settings.host, port)
            try:
                if _run_application(spec, settings, replicas, int(threads), stop):
                    if announce and not stop.is_set():
                        announce(f"http://{_url_host(settings.host)}:{port}")
                    _wait_for_stop(stop)
            finally:
                _stop_application(started_serve)
    finally:
        secrets.unlink(missing_ok=True)  # first, on its own: the secrets never outlive the command
        shutil.rmtree(shared, ignore_errors=True)


def _refuse_workers(overrides: dict[str, Any], replicas: int) -> None:
    if replicas < 1:
        raise ServingError(f"--replicas {replicas}: a deployment needs at least one replica. Fix: --replicas 1 or more")
    if int(overrides.get("workers") or 1) != 1:
        raise ServingError("--workers applies to --engine uvicorn (server processes on this machine); with "
                           "--engine ray the replicas are the workers. Fix: use --replicas N instead")


def _refuse_log_and_shadow(settings: ServingConfig) -> None:
    """From the command line or the bundle's ``serving:`` section alike."""
    if settings.log.url or settings.shadow:
        raise ServingError("--log and --shadow (serving.log.url, serving.shadow) are not supported with --engine "
                           "ray yet: each replica would "
                           "run its own prediction-log writer and spool, with relative paths resolved in the "
                           "replica's working folder, not yours. Fix: serve with --engine uvicorn (--workers N) "
                           "to log predictions")


def _serve_module() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray Serve, an optional extra. Fix: {INSTALL_HINT}") from None
    return serve


def _start_serve(ray: Any, host: str, port: int) -> bool:
    """Serve on the cluster, its proxies listening on ``host:port``; True when started here.
    Serve's HTTP address is set once per cluster: one already running elsewhere is refused."""
    from ray import serve
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        running = True
    except ValueError:
        running = False
    if running:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        config = client.http_config if client is not None else None
        if config is not None and (config.host, config.port) != (host, port):
            raise ServingError(f"Ray Serve already runs on this cluster, listening on {config.host}:{config.port}; "
                               f"it cannot also listen on {host}:{port}. Fix: --host {config.host} --port "
                               f"{config.port}, or stop the other Serve applications first")
        if APPLICATION in serve.status().applications:
            raise ServingError(f"an application named {APPLICATION!r} already runs on this cluster's Ray Serve. "
                               "Fix: stop the other `modelmill serve --engine ray` first")
    # Serve's driver-side INFO lines ("Connecting to existing Serve app … http_options will not be
    # applied", logged by serve.run itself) would read as a problem; the command announces its URL.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
    return not running


def _check_cpus(ray: Any, replicas: int, threads: int) -> None:
    """Refuse replicas the cluster's nodes could never place (each takes ``threads`` CPUs on
    one node): Serve would wait for them without end, the application DEPLOYING."""
    nodes = [node.get("Resources", {}).get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
    total = ray.cluster_resources().get("CPU", 0.0)
    fits = sum(int(cpus // threads) for cpus in nodes)
    if fits >= replicas:
        return
    per_node = ", ".join(f"{cpus:g}" for cpus in nodes) or "none"
    fix = (f"--replicas {fits} or fewer" if fits else f"--threads {int(max(nodes, default=0)) or 1} or fewer")
    raise ConfigError(f"--replicas {replicas} × --threads {threads} needs {replicas * threads} CPUs, {threads} on one "
                      f"node for each replica, but the cluster has {total:g} CPUs (per node: {per_node}), room for "
                      f"{fits} such replicas: Serve would wait for the rest forever. Fix: {fix}, or add CPUs "
                      "(nodes) to the cluster")


def _run_application(spec: ReplicaSpec, settings: ServingConfig, replicas: int, cpus: int,
                     stop: threading.Event, poll_s: float = 0.5) -> bool:
    """Deploy, then wait until every replica has loaded and warmed its model (True), or until
    ``stop`` is set (False: the caller deletes the application). Not ``serve.run``: it waits
    for the application without limit and cannot be interrupted (SIGINT and SIGTERM only set
    ``stop`` here)."""
    from ray import serve

    deployment = serve.deployment(
        name="model", num_replicas=replicas,
        # Our batcher bounds each replica's queue (503 past queue_size) and needs many requests
        # in flight to form batches: Serve's default of 5 ongoing requests would cap each batch at 5.
        max_ongoing_requests=settings.queue_size, max_queued_requests=settings.queue_size,
        graceful_shutdown_timeout_s=settings.grace_s, ray_actor_options={"num_cpus": cpus},
    )(serve.ingress()(ServedReplica))
    # _blocking=False: registers the application (and waits for the proxies), not for the replicas
    serve._run(deployment.bind(spec), name=APPLICATION, route_prefix="/", _blocking=False)
    return _wait_for_replicas(spec, stop, poll_s)


def _wait_for_replicas(spec: ReplicaSpec, stop: threading.Event, poll_s: float) -> bool:
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    said = ""
    while True:
        application = serve.status().applications.get(APPLICATION)
        if application is None:
            raise ServingError(f"the Serve application {APPLICATION!r} was deleted from outside while its replicas "
                               "started. Fix: start the command again, with nothing else deleting it")
        messages = [d.message for d in application.deployments.values() if d.message]
        if application.status == ApplicationStatus.RUNNING:
            return True
        if application.status in (ApplicationStatus.DEPLOY_FAILED, ApplicationStatus.UNHEALTHY):
            raise ServingError(f"the replicas of {spec.path} did not start: "
                               f"{_reason(messages or [application.message])[:600]}")
        waiting = next((m for m in messages if "taken more than" in m), "")
        if waiting and waiting != said:  # Serve says why it waits (resources, a slow start): say it too
            log.warning("the replicas are not all up yet: %s", " ".join(waiting.split()))
            said = waiting
        if stop.wait(poll_s):
            return False


def _reason(messages: list[str]) -> str:
    """A failed replica's error: the last line naming an error of its traceback."""
    lines = [line.strip() for message in messages for line in message.splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error:" in line and not line.endswith("Error:")),
                lines[-1] if lines else "no reason given by Ray Serve")


@contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set the event instead of stopping the process: once connected, Ray's
    fatal-signal handler would abort it (exit -6) with the application still deployed, and a
    signal that comes while the replicas start must still delete them."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_for_stop(stop: threading.Event, poll_s: float = 2.0) -> None:
    """Block until ``stop`` is set (or the application is deleted by someone else)."""
    from ray import serve

    while not stop.wait(poll_s):
        if APPLICATION not in serve.status().applications:
            log.warning("the Serve application %r was deleted from outside; stopping", APPLICATION)
            return


def _stop_application(started_serve: bool) -> None:
    """Delete our application (replicas drain within grace_s); shut Serve down if we started it
    (a Serve someone else runs keeps running, with their applications)."""
    from ray import serve

    log.info("stopping: deleting the Serve application (replicas finish their requests)")
    started = time.monotonic()
    try:
        serve.delete(APPLICATION)
        if started_serve:
            serve.shutdown()  # type: ignore[no-untyped-call]
    except Exception:  # a cluster already gone has nothing left to stop
        log.exception("stopping the Serve application failed")
    log.info("stopped in %.1f s", time.monotonic() - started)


def _free_port(host: str) -> int:
    """``--port 0`` for Serve: it needs a port to give all its proxies, so one is picked here."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])

