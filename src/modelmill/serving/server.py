"""Running the service: settings, threads, uvicorn, workers and graceful shutdown.

On SIGTERM (or Ctrl-C) readiness flips to 503 at once, uvicorn stops accepting
connections, in-flight and queued requests complete within ``grace_s``, then the
process exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from modelmill.bundle import Bundle, read_bundle
from modelmill.config.serving import ServingConfig
from modelmill.errors import ConfigError, ServingError
from modelmill.machine import physical_cores
from modelmill.serving.versions import ModelRoot

if TYPE_CHECKING:
    from modelmill.serving.state import ServerState

log = logging.getLogger("modelmill.serving")
_ENVIRONMENT = "MODELMILL_SERVE"


def resolve_settings(bundled: ServingConfig, overrides: dict[str, Any]) -> ServingConfig:
    """The bundle's ``serving:`` section with the command line's values on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    merged = {**bundled.model_dump(), **given}
    if isinstance(given.get("log"), dict):  # --log-* options change single keys of serving.log
        merged["log"] = {**bundled.log.model_dump(), **{k: v for k, v in given["log"].items() if v is not None}}
    try:
        return ServingConfig.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "serving." + ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{first['msg']} (got {first.get('input')!r})", path=where) from None


def newest_bundle(root: ModelRoot) -> tuple[str, Bundle]:
    """The newest version's name and its verified bundle (read once, for settings and model)."""
    version = root.newest()
    return version, read_bundle(root.locate(version))


def model_threads(settings: ServingConfig) -> int:
    """Intra-op threads per worker. One core is left to the event loop when cores are few:
    torch threads competing with the HTTP loop for 2 cores cost far more than they give."""
    if settings.threads != "auto":
        return int(settings.threads)
    share = physical_cores() // settings.workers
    return max(1, min(8, share - 1 if share <= 4 else share))


def load_state(path: str | Path, overrides: dict[str, Any], selection: Path | None = None,
               opened: tuple[ModelRoot, str, Bundle] | None = None) -> ServerState:
    """Open the model root, load and warm its newest version: the state of one worker
    (``opened``: the root, version and bundle already read)."""
    import torch  # the model's runtime, from here on (a wrong path or setting failed before it)

    from modelmill.serving.models import load_version
    from modelmill.serving.state import ServerState, freeze_heap

    from modelmill.serving.metrics import ServerMetrics

    root, version, bundle = opened or open_root(path)
    settings = resolve_settings(bundle.config().serving, overrides)
    torch.set_num_threads(model_threads(settings))
    first = load_version(root, version, settings, bundle)
    metrics = ServerMetrics()
    prediction_log = None
    if settings.log.url:
        from modelmill.monitoring import open_prediction_log

        prediction_log = open_prediction_log(settings.log, first.name, first.predictor.features,
                                             first.predictor.input_schema(), metrics.count_log)
    state = ServerState(root, settings, first, selection, metrics, prediction_log)
    freeze_heap()
    return state


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


def open_root(path: str | Path) -> tuple[ModelRoot, str, Bundle]:
    """The model root, its newest version and that version's verified bundle."""
    root = ModelRoot(Path(path))
    return (root, *newest_bundle(root))


def app_from_environment() -> Any:
    """App factory for worker processes (``--workers N``): reads what ``serve`` put in the
    environment, so every worker loads and warms its own copy of the model."""
    from modelmill.serving.app import create_app

    spec = json.loads(os.environ[_ENVIRONMENT])
    _log_like_uvicorn()
    return create_app(load_state(spec["path"], spec["overrides"], Path(spec["selection"])))


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
    settings = resolve_settings(opened[2].config().serving, overrides)
    _check_port_free(settings.host, settings.port)
    check_log_store(settings, opened[2])
    if workers == 1:
        from modelmill.serving.app import create_app

        state = load_state(path, overrides, opened=opened)
        config = uvicorn.Config(create_app(state), host=settings.host, port=settings.port,
                                timeout_graceful_shutdown=int(settings.grace_s) or None,
                                access_log=access_log, log_level="info", lifespan="on")
        server = AnnouncingServer(config, announce)
        _ignore_reraised_signals()
        server.run()
        return
    shared = Path(tempfile.mkdtemp(prefix="modelmill-serve-"))  # private (0700): the workers' selection
    os.environ[_ENVIRONMENT] = json.dumps({"path": str(Path(path).resolve()), "overrides": overrides,
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
