"""Served models for the serving tests: two versions of a small trained pipeline, and a
real uvicorn server on 127.0.0.1 (run in a thread, so a test can also reach its state)."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from modelmill.api import Pipeline
from modelmill.serving.app import create_app
from modelmill.serving.server import load_state
from modelmill.serving.state import ServerState
from tests.conftest import base_config, make_frame

TOKEN = "test-admin-token-0123456789"


def _train(folder: Path, seed: int) -> Path:
    frame = make_frame(rows=300, seed=seed)
    config = base_config(training={"epochs": 2, "batch_size": 64, "progress": False, "seed": seed})
    pipeline = Pipeline(config).fit(frame)
    return pipeline.save(folder)


@pytest.fixture(scope="session")
def trained_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with versions 1/ and 2/ (two trainings of the same pipeline)."""
    root = tmp_path_factory.mktemp("models")
    _train(root / "1", seed=1)
    _train(root / "2", seed=2)
    return root


@pytest.fixture(scope="session")
def onnx_versions(trained_versions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same two versions exported to ONNX graphs (``modelmill export``), for serving with
    runtime onnxruntime."""
    from modelmill.compression.export import export

    root = tmp_path_factory.mktemp("onnx-models")
    rows = tmp_path_factory.mktemp("rows") / "rows.csv"
    make_frame(rows=300, seed=1).to_csv(rows, index=False)
    for version in ("1", "2"):
        export(trained_versions / version, root / version, data=str(rows))
    return root


RUNTIMES = ["torch", "onnxruntime"]  # the serving tests that take `runtime_versions` run on both


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime_versions(request: pytest.FixtureRequest, trained_versions: Path) -> tuple[Path, str]:
    """The two versions and the runtime to serve them on: the trained bundles on torch, their
    exported copies on onnxruntime."""
    if request.param == "torch":
        return trained_versions, "torch"
    return request.getfixturevalue("onnx_versions"), "onnxruntime"


@pytest.fixture
def versions(trained_versions: Path, tmp_path: Path) -> Path:
    """A private copy, so that a test may add, break or remove versions."""
    copy = tmp_path / "models"
    shutil.copytree(trained_versions, copy)
    return copy


@dataclass
class LiveServer:
    url: str
    state: ServerState
    server: uvicorn.Server


@contextmanager
def running(config: uvicorn.Config, what: str = "the test server") -> Iterator[tuple[str, uvicorn.Server]]:
    """Real uvicorn on a thread for the duration of a block: its URL and the server."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def live_server(path: Path, **overrides: Any) -> Iterator[LiveServer]:
    """``modelmill serve PATH`` on a free port of 127.0.0.1, for the duration of a block."""
    state = load_state(path, {"port": 0, **overrides})
    config = uvicorn.Config(create_app(state), host=state.settings.host, port=0, log_level="warning",
                            timeout_graceful_shutdown=5, lifespan="on")
    with running(config) as (url, server):
        yield LiveServer(url, state, server)


@pytest.fixture
def admin_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", TOKEN)
    return TOKEN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def record(**changes: Any) -> dict[str, Any]:
    """A valid request record for the test pipeline."""
    base = {"x": 0.5, "colour": "red", "flag": "yes", "when": "2021-03-04", "review": "great tasty"}
    return {**base, **changes}


def served_counts(url: str) -> Counter[str]:
    """The server's own ledger: requests by status code, from /metrics (what the fuzz tests
    check for 5xx answers)."""
    counts: Counter[str] = Counter()
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        match = re.match(r'modelmill_requests_total\{route="[^"]*",status="(\d+)"\} ([0-9.e+]+)', line)
        if match:
            counts[match.group(1)] += int(float(match.group(2)))
    return counts
