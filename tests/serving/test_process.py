"""The real ``modelmill serve`` command in its own process: SIGTERM under load (in-flight
requests complete, exit 0), several workers following one admin call, and the errors a
user can make when starting it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.damage import flip_one_byte, unbuildable
from tests.serving.conftest import free_port, record


def _start(versions: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "modelmill.cli", "serve", str(versions), "--port", str(port), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_ready(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become ready")


@pytest.mark.timeout(300)
def test_sigterm_under_load_completes_in_flight_requests_and_exits_0(trained_versions: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(trained_versions, port, "--grace", "30")
    try:
        _wait_ready(process, url)
        body = {"instances": [record(x=i / 100) for i in range(1000)]}  # heavy: tens of ms per call
        outcomes: list[tuple[float, float, str]] = []  # (sent, answered, outcome)
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while not stop.is_set():
                    sent = time.monotonic()
                    try:
                        outcome = str(http.post("/v1/predict", json=body).status_code)
                    except httpx.TransportError as exc:  # refused or reset once the server stops listening
                        outcome = type(exc).__name__
                    outcomes.append((sent, time.monotonic(), outcome))
                    if not outcome.isdigit():
                        return

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        terminated_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=60)
        stop.set()
        for thread in threads:
            thread.join(60)
        log = process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
    assert exit_code == 0, log
    assert "draining" in log and "Traceback" not in log, log
    before = [o for o in outcomes if o[0] < terminated_at]
    in_flight = [o for o in before if o[1] > terminated_at]  # sent before SIGTERM, answered after
    assert len(before) > 20 and len(in_flight) >= 4, (len(before), len(in_flight))
    assert [o[2] for o in before if o[2] != "200"] == []  # nothing sent before SIGTERM failed
    assert not [o for o in outcomes if o[2].isdigit() and o[2] != "200"]  # no 5xx (or any non-200) at all


def _serve_fails(*args: str) -> str:
    process = subprocess.run([sys.executable, "-m", "modelmill.cli", "serve", *args],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    return " ".join(process.stderr.split())  # rich wraps long lines


def test_starting_errors_are_one_clear_message(tmp_path: Path, trained_versions: Path) -> None:
    assert "does not exist" in _serve_fails(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    assert "holds no bundle" in _serve_fails(str(tmp_path / "empty"))
    assert "serving.max_batch_size" in _serve_fails(str(trained_versions), "--max-batch-size", "0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = _serve_fails(str(trained_versions), "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}" in message and "--port" in message


def test_when_no_version_can_be_served_each_reason_is_named(versions: Path) -> None:
    flip_one_byte(versions / "1" / "weights.safetensors")
    (versions / "2" / "manifest.json").write_text("{not json")
    message = _serve_fails(str(versions))
    assert f"no version of {versions.resolve()} can be served:" in message, message
    assert "- version '2' failed to load or warm up: 2/manifest.json is damaged" in message, message
    assert "- version '1' failed to load or warm up: integrity check failed for 1/weights.safetensors" in message
    assert "Fix: repair or remove the broken versions" in message
    single = _serve_fails(str(versions / "1"))  # one bundle: its own error, as ever
    assert "integrity check failed for" in single and "no version of" not in single, single


@pytest.mark.timeout(300)
def test_workers_fall_back_past_broken_versions(versions: Path) -> None:
    """3 verifies but cannot be built (found by each worker), 2 fails verification (found
    before the workers start): both workers serve 1 and report 2 and 3."""
    shutil.copytree(versions / "1", versions / "3")
    unbuildable(versions / "3")
    flip_one_byte(versions / "2" / "weights.safetensors")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(versions, port, "--workers", "2", "--grace", "10")
    try:
        _wait_ready(process, url)
        time.sleep(2)  # both workers up
        seen = []
        for _ in range(20):  # new connections spread over the workers
            with httpx.Client(base_url=url, timeout=30) as fresh:
                model = fresh.get("/v1/model").json()
            seen.append((model["version"], tuple(b["version"] for b in model["broken_versions"])))
        assert set(seen) == {("1", ("2", "3"))}, seen
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert 'modelmill_version_broken{version="2"} 1.0' in metrics
        assert 'modelmill_version_broken{version="3"} 1.0' in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        log = process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
    warnings = [line for line in log.splitlines() if line.startswith("WARNING")]
    assert any("version '3' failed to load or warm up" in w and "version 1 is served instead" in w
               for w in warnings), log
    assert any("version '2' failed to load or warm up: integrity check failed" in w for w in warnings), log


@pytest.mark.timeout(300)
def test_workers_follow_an_admin_reload(trained_versions: Path) -> None:
    """Two worker processes; the admin call reaches one; both serve the new version."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    os.environ["MODELMILL_ADMIN_TOKEN"] = "token-for-workers"
    try:
        process = _start(trained_versions, port, "--workers", "2", "--grace", "10")
    finally:
        del os.environ["MODELMILL_ADMIN_TOKEN"]
    try:
        _wait_ready(process, url)
        time.sleep(2)  # both workers up
        with httpx.Client(base_url=url, timeout=30) as http:
            reload = http.post("/v1/admin/reload", json={"version": "1"},
                               headers={"Authorization": "Bearer token-for-workers"})
            assert reload.status_code == 200, reload.text
            time.sleep(3)  # the other worker follows within a second or so
            answered = set()
            for _ in range(40):  # new connections spread over the workers
                with httpx.Client(base_url=url, timeout=30) as fresh:
                    answered.add(fresh.post("/v1/predict", json={"instances": [record()]}).json()["version"])
        assert answered == {"1"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
