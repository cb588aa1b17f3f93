"""A real MLflow tracking server for the tests: the full ``mlflow`` package in its own virtual
environment (scripts/mlflow-server.sh makes it; ./test runs that first), started on a free
loopback port with a SQLite backend store and a local artefact root in a temporary folder. A
test may stop it and start it again on the same port and store (the server going away)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER_VERSION = os.environ.get("MLFLOW_SERVER_VERSION", "3.17.2")


# read once, at import: tests that move MODELMILL_CACHE (the registry's) must not lose the server
_CACHE = Path(os.environ.get("MODELMILL_CACHE") or Path.home() / ".cache" / "modelmill")


def server_python() -> Path | None:
    """The server venv's python, where scripts/mlflow-server.sh made it."""
    venv = _CACHE / f"mlflow-server-{SERVER_VERSION}"
    python = venv / "bin" / "python"
    return python if (venv / ".complete").is_file() and python.is_file() else None


# An empty store, copied from the first server this process started once it answered (its schema
# made, the Default experiment in it): the next servers start from a copy of it, as a server
# restarted on its store does, instead of running every migration of the schema again (seconds each).
_EMPTY_STORE: Path | None = None


def _keep_empty_store(database: Path) -> None:
    global _EMPTY_STORE
    folder = Path(tempfile.mkdtemp(prefix="modelmill-mlflow-empty-"))
    atexit.register(shutil.rmtree, folder, True)
    copy = folder / "mlflow.db"
    with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # consistent even while the server has the file open
    source.close()
    target.close()
    _EMPTY_STORE = copy


class MlflowServer:
    """A running tracking server: ``uri`` for clients, ``artifacts`` its artefact root on disk."""

    def __init__(self, python: Path, folder: Path, port: int) -> None:
        self.python, self.folder, self.port = python, folder, port
        self.uri = f"http://127.0.0.1:{port}"
        self.artifacts = folder / "artifacts"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(
            [str(self.python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.artifacts), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.running():
                return
            time.sleep(0.3)
        self.stop()
        tail = (self.folder / "server.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the MLflow server did not start on port {self.port}:\n{tail}")

    def running(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server and its workers at once (the whole process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, 9)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.process = None


@contextmanager
def mlflow_server() -> Iterator[MlflowServer]:
    python = server_python()
    if python is None:
        if os.environ.get("CI"):  # on CI the real server is the point of these tests: a skip would prove nothing
            pytest.fail(f"no MLflow {SERVER_VERSION} server venv: scripts/mlflow-server.sh (run by ./test) failed")
        pytest.skip(f"no MLflow {SERVER_VERSION} server venv (bash scripts/mlflow-server.sh makes it; ./test runs it)")
    folder = Path(tempfile.mkdtemp(prefix="modelmill-mlflow-"))
    if _EMPTY_STORE is not None:
        shutil.copyfile(_EMPTY_STORE, folder / "mlflow.db")
    server = None
    try:
        for attempt in range(3):  # the free port probed may be taken by another test process before the server binds it
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            server = MlflowServer(python, folder, port)
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        assert server is not None
        if _EMPTY_STORE is None:
            _keep_empty_store(folder / "mlflow.db")
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
