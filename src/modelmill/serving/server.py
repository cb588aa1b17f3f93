"""Running the service: settings, threads, uvicorn, workers and graceful shutdown.

On SIGTERM (or Ctrl-C) readiness flips to 503 at once, uvicorn stops accepting
connections, in-flight and queued requests complete within ``grace_s``, then the
process exits 0.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from modelmill.bundle import Bundle, read_bundle
from modelmill.config.serving import ServingConfig
from modelmill.errors import KEY_ERRORS, ConfigError, ServingError
from modelmill.machine import physical_cores
from modelmill.serving.problem import Problem
from modelmill.serving.versions import ModelRoot, load_failure, version_order

if TYPE_CHECKING:
    from modelmill.serving.models import Served
    from modelmill.serving.state import ServerState

log = logging.getLogger("modelmill.serving")
_ENVIRONMENT = "MODELMILL_SERVE"


def resolve_settings(bundled: ServingConfig, overrides: dict[str, Any]) -> ServingConfig:
    """The bundle's ``serving:`` section with the command line's values on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    foreign = sorted(set(given) - set(type(bundled).model_fields))
    if foreign:  # another task's limit (a recommender's max_k given for a classifier): say so, not "extra input"
        option = "--" + foreign[0].replace("_", "-")
        raise ConfigError(f"{option} is a setting of another task's service; this bundle's service has none. Fix: "
                          f"leave out {option}", path=f"serving.{foreign[0]}")
    merged = {**bundled.model_dump(), **given}
    if isinstance(given.get("log"), dict):  # --log-* options change single keys of serving.log
        merged["log"] = {**bundled.log.model_dump(), **{k: v for k, v in given["log"].items() if v is not None}}
    try:
        # the bundle's own kind of settings: a task's limits (a recommender's max_k) are kept
        return type(bundled).model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "serving." + ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{first['msg']} (got {first.get('input')!r})", path=where) from None


@dataclass
class Opened:
    """The model root and the newest version that reads and verifies, with its bundle (read
    once, for settings and model); ``broken``: each newer version and why it failed."""

    root: ModelRoot
    version: str
    bundle: Bundle
    broken: dict[str, str] = field(default_factory=dict)


def readable_versions(root: ModelRoot, broken: dict[str, str],
                      older_than: str | None = None) -> Iterator[tuple[str, Bundle]]:
    """The versions of ``root`` (those older than ``older_than``), newest first, each with its
    verified bundle and parsed config. One that fails goes into ``broken`` with the reason
    an HTTP client may see; a single bundle fails with its own error, as ever, and so does a
    key problem (:data:`~modelmill.errors.KEY_ERRORS`: no key, another key), which is the
    process's, not the version's: an older version must not be served silently instead."""
    candidates = root.first_versions() if older_than is None else root.older_versions(older_than)[::-1]
    for version in candidates:
        try:
            bundle = read_bundle(root.locate(version))
            bundle.task_config()
        except KEY_ERRORS:  # the process's key (none, another) fails every sealed version alike: say so
            raise
        except Exception as exc:  # a damaged version never hides the older ones
            if not root.falls_back:
                raise
            broken[version] = load_failure(root, version, exc).message
            continue
        yield version, bundle


def nothing_to_serve(root: ModelRoot, broken: dict[str, str]) -> ServingError:
    reasons = "".join(f"\n- {' '.join(broken[v].split())}" for v in sorted(broken, key=version_order, reverse=True))
    return ServingError(f"no version of {root.path} can be served:{reasons}\nFix: repair or remove the broken "
                        "versions (or add a good one), then start again")


def model_threads(settings: ServingConfig) -> int:
    """Intra-op threads per worker. One core is left to the event loop when cores are few:
    torch threads competing with the HTTP loop for 2 cores cost far more than they give."""
    if settings.threads != "auto":
        return int(settings.threads)
    share = physical_cores() // settings.workers
    return max(1, min(8, share - 1 if share <= 4 else share))


def load_state(path: str | Path, overrides: dict[str, Any], selection: Path | None = None,
               opened: Opened | None = None) -> ServerState:
    """Open the model root, load and warm its newest version that works: the state of one
    worker (``opened``: what :func:`open_root` found). The settings are the served version's."""
    from modelmill.serving.state import ServerState, freeze_heap

    from modelmill.serving.metrics import ServerMetrics
    from modelmill.serving.models import ServedModel

    opened = opened or open_root(path)
    root, broken = opened.root, dict(opened.broken)
    first, settings = _load_newest(opened, overrides, broken)
    for version in sorted(broken, key=version_order):
        log.warning("%s; version %s is served instead", " ".join(broken[version].split()), first.version)
    check_task_settings(settings, first.task)
    metrics = ServerMetrics()
    prediction_log = None
    if settings.log.url and isinstance(first, ServedModel):
        from modelmill.monitoring import open_prediction_log

        prediction_log = open_prediction_log(settings.log, first.name, first.predictor.features,
                                             first.predictor.input_schema(), metrics.count_log,
                                             policy=first.predictor.privacy)
    state = ServerState(root, settings, first, selection, metrics, prediction_log, broken)
    if settings.shadow is not None:
        _start_shadow(state, settings.shadow)
    freeze_heap()
    return state


def _load_newest(opened: Opened, overrides: dict[str, Any],
                 broken: dict[str, str]) -> tuple[Served, ServingConfig]:
    """Load and warm ``opened``'s version, else the next older one that works (each failure
    goes into ``broken``); the served model and its settings."""
    import torch  # the model's runtime, from here on (a wrong path or setting failed before it)

    from modelmill.serving.models import load_served

    root = opened.root
    # read only when needed, and never for a root that does not fall back
    older = readable_versions(root, broken, older_than=opened.version) if root.falls_back else iter(())
    for version, bundle in itertools.chain([(opened.version, opened.bundle)], older):
        settings = resolve_settings(bundle.task_config().serving, overrides)
        torch.set_num_threads(model_threads(settings))
        try:
            return load_served(root, version, settings, bundle), settings
        except Problem as exc:
            if not root.falls_back:
                raise
            broken[version] = exc.message
    raise nothing_to_serve(root, broken)


def _start_shadow(state: ServerState, name: str) -> None:
    """``--shadow NAME``: the challenger loaded, warmed and shadowing before the first request."""
    from modelmill.serving.shadow import open_shadow

    try:
        state.shadow_with(open_shadow(name, state))
    except BaseException:
        if state.prediction_log is not None:
            state.prediction_log.close(1.0)
        raise


def check_shadow(settings: ServingConfig, root: ModelRoot) -> None:
    """``--shadow NAME`` names a challenger that is there, and the log its predictions go to
    is set: checked before any model is loaded or worker started."""
    if settings.shadow is None:
        return
    if root.registry_info("") is not None:  # a registered model has no .shadow/ folder: say that first
        root.locate_shadow(settings.shadow)
    if not settings.log.url:
        raise ServingError(f"--shadow {settings.shadow}: shadow mode needs the prediction log (a challenger's "
                           "predictions are only of use logged beside the served ones). Fix: add --log URL")
    root.locate_shadow(settings.shadow)  # a Problem is a ServingError: its message says what is missing


def check_task_settings(settings: ServingConfig, task: str) -> None:
    """A forecast or a recommender (any task but ``predict``) is served without the prediction
    log and shadow mode: refused before any model is loaded or worker started (exit 2), not ignored."""
    if task == "predict":
        return
    given = [name for name, value in (("serving.log.url (--log)", settings.log.url),
                                      ("serving.shadow (--shadow)", settings.shadow)) if value]
    if given:
        answer = _ANSWERS.get(task, f"a `task: {task}` model answers otherwise")
        raise ServingError(f"{' and '.join(given)}: a `task: {task}` model is served without the prediction log, "
                           "its drift gauges, feedback and shadow mode (they follow one logged record per prediction "
                           f"and its label; {answer}). Fix: serve without --log and --shadow, and remove "
                           "serving.log.url / serving.shadow from the config")


_ANSWERS = {"forecast": "a forecast answers a whole horizon per series",
            "recommend": "a recommendation answers a ranked list of items per user"}


def check_log_store(settings: ServingConfig, bundle: Bundle) -> None:
    """Open the prediction store once, before any model is loaded or worker started: a
    wrong URL, a server that is down or a store of another model fails at once (exit 2)."""
    if not settings.log.url:
        return
    from modelmill.monitoring import identity_of, open_store

    config = bundle.config()
    store, _ = open_store(settings.log, identity_of(config.name, bundle.input_schema()),
                          [feature.name for feature in config.features if feature.pii])
    store.close()


def open_root(path: str | Path) -> Opened:
    """The model root, its newest version that reads and verifies, and that version's bundle.

    Raises:
        ServingError: no version reads (each one's reason in the message).
        BundleError: a single bundle that fails to read.
        EncryptionKeyError: no key, or another key, for a sealed version (never a broken version).
    """
    from modelmill.serving.registry_root import open_model_root

    root = open_model_root(path)
    broken: dict[str, str] = {}
    for version, bundle in readable_versions(root, broken):
        return Opened(root, version, bundle, broken)
    raise nothing_to_serve(root, broken)


def app_from_environment() -> Any:
    """App factory for worker processes (``--workers N``): reads what ``serve`` put in the
    environment, so every worker loads and warms its own copy of the model."""
    from modelmill.serving.app import create_app
    from modelmill.serving.registry_root import RegistryRoot, open_model_root

    spec = json.loads(os.environ[_ENVIRONMENT])
    _log_like_uvicorn()
    selection = Path(spec["selection"])
    if spec.get("registry") is None:
        return create_app(load_state(spec["path"], spec["overrides"], selection))
    # a registered model: the version the parent resolved (or the one the workers serve now, for a worker
    # restarted after a reload), never the alias resolved again: it may have moved, the registry may be down
    root = open_model_root(spec["path"])
    assert isinstance(root, RegistryRoot)
    pinned = dict(spec["registry"])
    chosen = _selected_version(selection) or str(pinned["version"])
    if chosen == str(pinned["version"]):
        root.start_with(pinned)
    try:
        opened = Opened(root, chosen, read_bundle(root.locate(chosen)))
        state = load_state(spec["path"], spec["overrides"], selection, opened=opened)
    finally:
        root.start_with(None)  # from now on versions are asked of the registry (a reload, a rollback)
    return create_app(state)


def _selected_version(selection: Path) -> str | None:
    """The version the workers serve now (what the last admin call, or the parent, selected)."""
    try:
        version = json.loads(selection.read_bytes()).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return str(version) if version else None


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, telling its URL once it listens (port 0 picks a free port)."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[str], None] | None = None) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.announce and self.servers:
            port = self.servers[0].sockets[0].getsockname()[1]
            self.announce(f"http://{_url_host(self.config.host)}:{port}")


def serve(path: str | Path, overrides: dict[str, Any], *, access_log: bool = False,
          announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C; returns normally after a graceful stop."""
    _log_like_uvicorn()
    workers = int(overrides.get("workers") or 1)
    # The path, the settings and the port are checked before any model is loaded (or torch
    # imported), so that a mistake fails at once and before forking workers.
    opened = open_root(path)
    settings = resolve_settings(opened.bundle.task_config().serving, overrides)
    _check_port_free(settings.host, settings.port)
    check_task_settings(settings, opened.bundle.task)
    check_log_store(settings, opened.bundle)
    check_shadow(settings, opened.root)
    if workers == 1:
        from modelmill.serving.app import create_app

        state = load_state(path, overrides, opened=opened)
        if (state.settings.host, state.settings.port) != (settings.host, settings.port):
            _check_port_free(state.settings.host, state.settings.port)  # an older version served, set otherwise
        settings = state.settings
        config = uvicorn.Config(create_app(state), host=settings.host, port=settings.port,
                                timeout_graceful_shutdown=int(settings.grace_s) or None,
                                access_log=access_log, log_level="info", lifespan="on")
        server = AnnouncingServer(config, announce)
        _ignore_reraised_signals()
        server.run()
        return
    from modelmill.files import atomic_write_bytes
    from modelmill.serving.registry_root import RegistryRoot

    shared = Path(tempfile.mkdtemp(prefix="modelmill-serve-"))  # private (0700): the workers' selection
    # what the workers serve first is what was resolved here, written before any worker starts: a worker
    # (or one restarted later) starts with the selection, and only an admin reload resolves an alias again
    atomic_write_bytes(shared / "selection.json",
                       json.dumps({"seq": 1, "version": opened.version, "history": []}).encode())
    registry = opened.root.registry_info(opened.version)
    # a registered model's URI as given, with the version resolved here; a path made absolute
    where = str(path) if registry else str(Path(path).resolve())
    pinned = opened.root.pinned(opened.version) if isinstance(opened.root, RegistryRoot) else None
    os.environ[_ENVIRONMENT] = json.dumps({"path": where, "overrides": overrides, "registry": pinned,
                                           "selection": str(shared / "selection.json")})
    from modelmill.serving.metrics import MULTIPROCESS_ENVIRONMENT

    (shared / "metrics").mkdir()  # every worker's metric values, summed by whichever answers a scrape
    os.environ[MULTIPROCESS_ENVIRONMENT] = str(shared / "metrics")
    config = uvicorn.Config("modelmill.serving.server:app_from_environment", factory=True,
                            host=settings.host, port=settings.port, workers=workers,
                            timeout_graceful_shutdown=int(settings.grace_s) or None,
                            access_log=access_log, log_level="info", lifespan="on")
    sock = config.bind_socket()
    if announce:
        announce(f"http://{_url_host(settings.host)}:{sock.getsockname()[1]}")
    _ignore_reraised_signals()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _check_port_free(host: str, port: int) -> None:
    """A taken port is a user's matter: say so, instead of uvicorn's error and exit 1."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServingError(f"cannot listen on {host}:{port} ({exc.strerror}). Fix: stop what uses it, "
                               "or pick another port with --port (0 picks a free one)") from None


def _log_like_uvicorn() -> None:
    """The service's own lines (versions loaded, swaps, draining, errors with their traces)
    go to stderr beside uvicorn's, in the same format."""
    logger = logging.getLogger("modelmill.serving")
    if not any(getattr(h, "modelmill_serving", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        handler.modelmill_serving = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _ignore_reraised_signals() -> None:
    """uvicorn re-raises the stop signal after a graceful shutdown, restoring the handler it
    found. Installing a no-op first makes a graceful SIGTERM end with exit code 0."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
