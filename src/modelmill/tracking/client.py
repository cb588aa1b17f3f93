"""The MLflow client, imported lazily: where the tracking server is, how quickly a dead one is
given up on, and messages that never show credentials.

MLflow is an optional extra (``pip install 'modelmill[tracking]'``); nothing here imports it
until a client is asked for, so a run without tracking never pays for it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from types import ModuleType
from typing import TYPE_CHECKING, Any

from modelmill.config.tracking import check_tracking_uri
from modelmill.errors import ConfigError

if TYPE_CHECKING:
    from modelmill.config.tracking import TrackingConfig

INSTALL_HINT = "pip install 'modelmill[tracking]'"
URI_VARIABLE = "MLFLOW_TRACKING_URI"
SECRET_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                    "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET")
# MLflow retries a failing request 7 times with a doubling back-off and waits 120 s for an answer:
# minutes before a dead server is known dead. A tracked run, which must not be held up by its
# tracking, gives up sooner, unless the user set these variables. (Not the registry's commands: a
# register or a fetch exists for its transfer, which may take longer than this on a remote store.)
QUICK_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# Every client of ours: our own messages say where a run is, and MLflow's prints and progress bars
# would mix into the command's output (stdout may be a table a script reads); and a server that
# refuses connections is retried twice, not for minutes (the answer's timeout stays MLflow's).
QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
         "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
# A server of a registered model (``serve models:/NAME@ALIAS``) asks the registry at start, on a
# reload and on a rollback: a registry that takes a request and never answers would hold that call
# for MLflow's 120 s on each of its three tries. 60 s of silence is taken as a failure (a reload
# answers 409 and the served version stays), unless the user set the variable. Not shorter: it
# bounds each wait for bytes, and a server proxying its artefact store fetches a whole file
# before it sends the first one (MLflow's artefact proxy does), which for a large bundle on S3 may
# take tens of seconds.
SERVING_TIMEOUT = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@")  # to the last @: a password may hold one
_QUERY = re.compile(r"(?P<url>[A-Za-z][A-Za-z0-9+.-]*://[^\s?#]*)\?[^\s#]*")  # signed URLs carry their keys here


def tracking_uri(config: TrackingConfig | None = None, *, given: str | None = None) -> str | None:
    """Where runs are tracked: ``given`` (a command-line option), else the config's ``tracking.uri``,
    else MLFLOW_TRACKING_URI; None when tracking is off (``tracking.enabled: false``) or nowhere set.

    Raises:
        ConfigError: the URI has a scheme MLflow cannot track to (named without its credentials).
    """
    if config is not None and not config.enabled and given is None:
        return None
    where, uri = "--tracking-uri", given
    if uri is None and config is not None and config.uri:
        where, uri = "tracking.uri", config.uri
    if uri is None:
        where, uri = URI_VARIABLE, os.environ.get(URI_VARIABLE) or None
    if uri is None:
        return None
    try:
        return check_tracking_uri(uri.strip())
    except ValueError as exc:
        raise ConfigError(str(exc), path=where) from None


def bundle_tracking_uri(config: TrackingConfig | None = None, *, given: str | None = None) -> str | None:
    """Where a command that reads a bundle (``lineage``, ``evaluate``) looks runs up or logs them:
    ``given`` (--tracking-uri), else MLFLOW_TRACKING_URI. Never the bundle's own ``tracking.uri``:
    whoever made the bundle would choose the host that gets the user's MLflow credentials. Only
    its ``tracking.enabled: false`` is honoured (and only without ``given``): it can turn tracking
    off, never point it elsewhere.

    Raises:
        ConfigError: the URI has a scheme MLflow cannot track to (named without its credentials).
    """
    if config is not None and not config.enabled and given is None:
        return None
    return tracking_uri(given=given)


def required_uri(given: str | None, what: str) -> str:
    """The tracking URI a registry command needs (``what``: the command, for the message)."""
    uri = tracking_uri(given=given)
    if uri is None:
        raise ConfigError(f"{what} needs the MLflow tracking server that holds the model registry. Fix: give "
                          f"--tracking-uri http://HOST:5000, or set {URI_VARIABLE}")
    return uri


def import_mlflow() -> ModuleType:
    """The ``mlflow`` module, or a ConfigError with the install hint."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"experiment tracking needs MLflow, which is not installed. Fix: {INSTALL_HINT} "
                          "(or remove the tracking section and unset MLFLOW_TRACKING_URI)") from None
    return mlflow


def mlflow_client(uri: str) -> Any:
    """An ``MlflowClient`` for the tracking server (and model registry) at ``uri``, with MLflow quiet
    on our output (QUIET). A tracked run, and ``lineage``'s look-up, set QUICK_FAILURE first."""
    for name, value in QUIET.items():
        os.environ.setdefault(name, value)
    import_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def quick_failure_defaults() -> None:
    """MLflow's request settings of QUICK_FAILURE, where the user set none (called on the calling
    thread, before any thread of ours starts: the environment is not changed while others read it)."""
    for name, value in QUICK_FAILURE.items():
        os.environ.setdefault(name, value)


def serving_timeout_default() -> None:
    """MLflow's answer timeout of SERVING_TIMEOUT, where the user set none (called as a server opens
    its registered model, before the server's threads start). It holds for the rest of the
    process, as QUIET does."""
    for name, value in SERVING_TIMEOUT.items():
        os.environ.setdefault(name, value)


def redact(text: str) -> str:
    """``text`` without credentials: a URL's ``user:password@`` and its query (where signed URLs keep
    their signatures and tokens) and the values of MLflow's credential variables become ``***``."""
    text = _QUERY.sub(r"\g<url>?***", _USERINFO.sub(r"\g<scheme>***@", text))
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:  # a one-letter user name would blank every message
            text = text.replace(secret, "***")
    return text


def source_name(data: str) -> str:
    """The file name of a data path or URL, for a run's name: without the query or fragment, where
    a signed URL keeps its keys, and without credentials."""
    return redact(Path(re.split(r"[?#]", str(data), maxsplit=1)[0]).name)


def server_key(uri: str) -> str:
    """One spelling of a tracking server's URI, without credentials (for the cache and the lock of
    its registered models): lower-case scheme and host, no default port, no trailing slash."""
    parts = urlsplit(redact(uri).strip())
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is not None and (parts.scheme.lower(), port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), parts.query, ""))


def failure(exc: BaseException) -> str:
    """One line saying why an MLflow call failed, without credentials or a traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text)[:300]
