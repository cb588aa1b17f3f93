"""A registry that takes requests and never answers: `serve models:/NAME@ALIAS` fails in bounded
time with one clear message (exit 2), not after MLflow's 120 s on each of its three tries. The
"registry" is a real TCP listener on loopback that accepts every connection and says nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from modelmill.serving.registry_root import open_model_root
from modelmill.tracking.client import SERVING_TIMEOUT

TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"


@pytest.fixture
def silent_registry() -> Iterator[tuple[str, list[socket.socket]]]:
    """The URI of a listener that accepts and never answers, and the connections it took."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    taken: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                taken.append(listener.accept()[0])
            except OSError:  # closed: the test is over
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", taken
    finally:
        listener.close()
        for connection in taken:
            connection.close()


def test_serving_a_registry_that_never_answers_ends_in_bounded_time_with_exit_2(
        silent_registry: tuple[str, list[socket.socket]]) -> None:
    uri, taken = silent_registry
    started = time.monotonic()
    # what a timed-out registry call does (exit code, message, tries), at 1 s a try for the test's sake;
    # the default (60 s) is the other test's. modelmill's own retry settings (QUIET), not the caller's
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_HTTP_REQUEST")}
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "serve", "models:/credit@champion"],
                          capture_output=True, text=True, timeout=200,
                          env={**environment, "MLFLOW_TRACKING_URI": uri, TIMEOUT: "1"})
    seconds = time.monotonic() - started
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stderr
    assert f"the MLflow server at {uri} did not answer" in said and "timed out" in said, said
    assert "allow it more seconds with MLFLOW_HTTP_REQUEST_TIMEOUT" in said, said
    assert "Traceback" not in done.stderr
    assert 1 <= len(taken) <= 3, taken  # MLflow's first try and at most the two retries modelmill allows
    assert seconds < 60, seconds  # three tries of 1 s and their back-off, plus the start of the command


def test_a_registered_model_root_sets_the_serving_timeout_unless_the_user_chose_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv(TIMEOUT, "placeholder")  # so that monkeypatch restores the variable's absence or value
    monkeypatch.delenv(TIMEOUT)
    open_model_root("models:/credit@champion")
    assert os.environ[TIMEOUT] == SERVING_TIMEOUT[TIMEOUT] == "60"
    monkeypatch.setenv(TIMEOUT, "300")  # the user's own choice stays
    open_model_root("models:/credit@champion")
    assert os.environ[TIMEOUT] == "300"
