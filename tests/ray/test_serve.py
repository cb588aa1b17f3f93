"""``modelmill serve MODELS --engine ray --replicas 2`` on the shared test cluster: the real
command in its own process, answering a representative part of the HTTP contract of
tests/serving (predictions, bad input, probes, model metadata, admin reload), its requests
spread over both replicas, its proxy on loopback only, and a clean stop on SIGTERM.

What of tests/serving cannot pass on Ray Serve, and why (checked against Ray 2.60, by hand
where no test here shows it):

- ``/metrics`` (``test_probes_and_metrics``, the ``/metrics`` part of
  ``test_unknown_routes_and_methods_…``, test_drift_gauges): it is the registry of the one
  replica Serve routes the scrape to; nothing sums the replicas (``--workers`` share a
  Prometheus multiprocess folder on one machine). Ray's own ``ray_serve_*`` metrics cover the
  deployment as a whole.
- Draining (``test_readiness_flips_to_503_when_draining``, test_process's SIGTERM test): on
  SIGTERM the command deletes the Serve application; the proxy drops its route at once, so
  ``/readyz`` answers the proxy's 404 ("Path '/readyz' not found"), never our 503, while each
  replica finishes the requests it accepted (within ``grace_s``); then the proxy stops
  (connection refused). What holds is tested below: accepted requests finish, exit 0.
- ``test_request_id_is_echoed_when_safe``: the id is echoed, but Serve's proxy adds its own
  ``X-Request-ID`` header (a UUID when the client sends none, the same value ours takes), so
  the answer carries the header twice.
- 413 "before the body is buffered" (test_app's two 413 tests): the answer is the same 413
  (tested below), but a body without Content-Length has gone through Serve's proxy first.
- ``--log`` / ``--shadow`` (test_shadow, the prediction-log and ``/v1/feedback`` tests): refused
  with ``--engine ray`` (each replica would run its own writer and spool, and a relative
  ``sqlite:///`` path would resolve in the replica's working folder).
- ``--workers`` (test_process's worker tests): refused; ``--replicas`` is its counterpart, and
  the admin reload that workers follow is tested here across replicas.
- Tests that reach into the server's state in the test's process (``live.state``:
  test_batching's model-call counts and 503/504 with a blocked model, test_versions'
  damage-then-reload checks): the replicas run the same code, out of this process's reach.
- ``test_admin_refuses_remote_callers_by_default``: not run (it needs a non-loopback client);
  Serve forwards the ASGI scope, with the client's address, to the replica, so the same check
  applies.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.ray_cluster import NODE_CPUS, TestCluster
from tests.serving.conftest import _train, free_port, record

ADMIN = "ray-admin-token-0123456789"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    _train(root / "1", seed=1)
    shutil.copytree(root / "1", root / "2")  # a second version to reload from, without a second training
    return root


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelmill.cli", "serve", *args]


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)  # its output so far, read by a thread

    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def served(ray_cluster: TestCluster, versions: Path) -> Iterator[Served]:
    """The command, started with two replicas, until a test stops it (or the module ends)."""
    port = free_port()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "MODELMILL_ADMIN_TOKEN": ADMIN}
    process = subprocess.Popen(
        _command(str(versions), "--engine", "ray", "--replicas", "2", "--port", str(port), "--max-records", "500",
                 "--grace", "5"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    live = Served(f"http://127.0.0.1:{port}", process)
    threading.Thread(target=lambda: live.lines.extend(process.stdout or []), daemon=True).start()
    try:
        _wait_ready(live)
        yield live
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_ready(live: Served, timeout: float = 180) -> None:
    """Until the command says it serves (every replica up), and readiness answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if live.process.poll() is not None:
            time.sleep(0.5)  # the rest of its output
            raise AssertionError(f"serve exited early:\n{live.output()}")
        if "serving " in live.output() and httpx.get(f"{live.url}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"serve --engine ray did not become ready within {timeout:.0f} s:\n{live.output()}")


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=60) as client:
        yield client


def test_predict_one_and_many_records(http: httpx.Client) -> None:
    one = http.post("/v1/predict", json={"instances": [record()]})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model"] == "tiny" and body["version"] == "2" and len(body["predictions"]) == 1
    prediction = body["predictions"][0]
    assert prediction["label_predicted"] in ("good", "bad")
    assert prediction["label_probability_good"] + prediction["label_probability_bad"] == pytest.approx(1, abs=1e-5)
    assert body["request_id"] in one.headers.get_list("x-request-id")
    many = http.post("/v1/predict", json={"instances": [record(x=i / 10) for i in range(50)]})
    assert many.status_code == 200 and len(many.json()["predictions"]) == 50
    assert many.headers["x-modelmill-replica"]


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{", 400, "invalid_json"),
    (b'{"instances": [{"x": "many"}]}', 422, None),
    (b'{"instances": []}', 422, None),
    (b'{"rows": [1]}', 422, None),
])
def test_bad_input_gets_4xx_in_the_error_shape(http: httpx.Client, body: bytes, status: int,
                                               code: str | None) -> None:
    answer = http.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["message"] and (code is None or error["code"] == code)
    assert "Traceback" not in answer.text and "site-packages" not in answer.text


def test_limits_of_the_command_line_hold_in_the_replicas(http: httpx.Client) -> None:
    too_many = http.post("/v1/predict", json={"instances": [record()] * 501})
    assert too_many.status_code == 422, too_many.text
    huge = http.post("/v1/predict", content=b"x" * (3 * 1024 * 1024), headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"


def test_probes_and_model_metadata(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["version"] == "2"
    info = http.get("/v1/model").json()
    assert info["name"] == "tiny" and info["versions"] == ["1", "2"]
    assert info["limits"]["max_records"] == 500
    assert http.get("/v1/nothing").json()["error"]["code"] == "not_found"


def test_requests_spread_over_both_replicas(served: Served) -> None:
    url = served.url

    def one(_: int) -> str:
        with httpx.Client(base_url=url, timeout=60) as fresh:  # a new connection each: both proxies get some
            answer = fresh.post("/v1/predict", json={"instances": [record()]})
            assert answer.status_code == 200, answer.text
            return answer.headers["x-modelmill-replica"]

    with ThreadPoolExecutor(8) as pool:
        replicas = set(pool.map(one, range(48)))
    assert len(replicas) == 2, replicas


def test_the_proxy_listens_on_loopback_only(served: Served) -> None:
    port = int(served.url.rsplit(":", 1)[1])
    listening = {c.laddr.ip for c in psutil.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening and listening <= {"127.0.0.1"}, listening


def test_an_admin_reload_reaches_every_replica(http: httpx.Client, served: Served) -> None:
    assert http.post("/v1/admin/reload", json={"version": "1"}).status_code == 401
    reload = http.post("/v1/admin/reload", json={"version": "1"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert reload.status_code == 200, reload.text

    def version(_: int) -> tuple[str, str]:
        with httpx.Client(base_url=served.url, timeout=60) as fresh:  # a new connection each: both replicas
            answer = fresh.post("/v1/predict", json={"instances": [record()]})
            assert answer.status_code == 200, answer.text
            return answer.headers["x-modelmill-replica"], answer.json()["version"]

    # The other replica follows the selection file within a second or so: until a round of
    # answers comes from both replicas, all of version 1 (a deadline, not a fixed wait)
    deadline, answers = time.monotonic() + 30, set[tuple[str, str]]()
    while time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as pool:
            answers = set(pool.map(version, range(24)))
        if {v for _, v in answers} == {"1"} and len({r for r, _ in answers}) == 2:
            return
        time.sleep(0.2)
    raise AssertionError(f"not every replica answers version 1 within 30 s of the reload: {answers}")


def test_sigterm_under_load_finishes_accepted_requests_and_exits_0(served: Served) -> None:
    url, process = served.url, served.process
    outcomes: list[tuple[float, float, str]] = []  # (sent, answered, status or transport error)
    answered, busy = [0] * 4, [False] * 4  # per client: its 200s so far; a request of its is in flight
    stop = threading.Event()
    body = {"instances": [record(x=i / 500) for i in range(500)]}  # --max-records 500: the longest request

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as own:  # one connection each: sent is sent at once
            while not stop.is_set():
                sent = time.monotonic()
                busy[n] = True
                try:
                    outcome = str(own.post("/v1/predict", json=body).status_code)
                except httpx.TransportError as exc:  # refused once the proxy has gone
                    outcome = type(exc).__name__
                busy[n] = False
                outcomes.append((sent, time.monotonic(), outcome))
                answered[n] += outcome == "200"
                if not outcome.isdigit():
                    return

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + 60  # until every client has had an answer, and has its next request out
    while not (all(answered) and all(busy)) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert all(answered) and all(busy), f"the clients got no answers within 60 s: {outcomes}"
    terminated_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    exit_code = process.wait(timeout=120)
    stop.set()
    for thread in clients:
        thread.join(60)
    time.sleep(0.5)  # the reader thread takes the last lines
    output = served.output()
    assert exit_code == 0 and "stopped" in output and "Traceback" not in output, output
    relative = [(round(sent - terminated_at, 3), round(done - terminated_at, 3), outcome)
                for sent, done, outcome in outcomes]
    in_flight = [o for o in relative if o[0] < 0 < o[1]]  # out when SIGTERM came: at least one, by the wait
    assert in_flight and {o[2] for o in in_flight} <= {"200", "404"}, relative  # never dropped nor a 5xx
    assert any(o[2] == "200" for o in in_flight), relative  # the replicas finished what they had accepted
    # Never a 5xx: a request the proxy routes no more (the application being deleted) gets its 404;
    # once the proxy stops, a connection is refused, closed or reset (ConnectError, ReadError…), but
    # only for requests sent after SIGTERM
    assert all(o[2] in ("200", "404") for o in relative if o[0] < 0 or o[2].isdigit()), relative
    with pytest.raises(httpx.TransportError):  # Serve was started by the command: it is gone with it
        httpx.get(f"{url}/healthz", timeout=5)


def _stopped(served: Served) -> None:
    """The tests below start Serve themselves: the module's command must have stopped (the
    SIGTERM test does it, unless deselected)."""
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(120) == 0, served.output()


# A replica class replaced in the command's process: defined in __main__ (python -c), so Serve
# ships it by value to the replicas. Its start writes a marker file, then fails or hangs.
_REPLICA = ("import time, pathlib, modelmill.serving.ray_engine as engine\n"
            "class Replica(engine.ServedReplica):\n"
            "    def __init__(self, spec):\n"
            "        pathlib.Path({marker!r}).write_text('started')\n"
            "        {then}\n"
            "engine.ServedReplica = Replica\n")


def test_a_replica_that_fails_to_start_is_named_and_exits_2(served: Served, versions: Path,
                                                               tmp_path: Path) -> None:
    _stopped(served)
    prelude = _REPLICA.format(marker=str(tmp_path / "marker"), then="raise OSError('the disk fell off, on purpose')")
    message = _fails(str(versions), "--engine", "ray", "--port", str(free_port()), prelude=prelude, timeout=240)
    assert "did not start" in message and "the disk fell off, on purpose" in message, message


def test_ctrl_c_while_the_replicas_start_deletes_them_and_exits_0(served: Served, versions: Path,
                                                                   tmp_path: Path) -> None:
    _stopped(served)
    marker = tmp_path / "marker"
    code = _REPLICA.format(marker=str(marker), then="time.sleep(600)") + "from modelmill.cli import main; main()"
    process = subprocess.Popen([sys.executable, "-c", code, "serve", str(versions), "--engine", "ray", "--port",
                                str(free_port()), "--grace", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120  # until a replica is in its constructor: the application DEPLOYING
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), f"no replica started within 120 s (exit {process.poll()})"
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "stopped" in output and "serving " not in output, output
    assert time.monotonic() - started < 60, output


def test_more_replicas_than_cpus_are_refused(ray_cluster: TestCluster, versions: Path) -> None:
    cpus = NODE_CPUS * 2  # the test cluster: two nodes
    message = _fails(str(versions), "--engine", "ray", "--replicas", str(cpus + 1), "--threads", "1")
    assert f"--replicas {cpus + 1} × --threads 1 needs {cpus + 1} CPUs" in message, message
    assert f"the cluster has {cpus} CPUs (per node: {NODE_CPUS}, {NODE_CPUS})" in message, message
    assert f"Fix: --replicas {cpus} or fewer" in message, message
    message = _fails(str(versions), "--engine", "ray", "--replicas", "1", "--threads", str(NODE_CPUS + 1))
    assert "room for 0 such replicas" in message and f"Fix: --threads {NODE_CPUS} or fewer" in message, message


def test_secrets_reach_the_replicas_by_a_private_file_only(tmp_path: Path) -> None:
    from modelmill.serving.ray_engine import ReplicaSpec, Secrets

    secrets, path = Secrets({"MODELMILL_ADMIN_TOKEN": ADMIN, "UNSET": None}), tmp_path / "secrets.json"
    secrets.write(path)
    assert path.stat().st_mode & 0o777 == 0o600 and Secrets.read(path) == secrets
    assert ADMIN not in repr(secrets)
    with pytest.raises(FileExistsError):  # never an existing file (nor a link planted there)
        secrets.write(path)
    spec = ReplicaSpec("/models", {}, str(tmp_path / "selection.json"), str(path))  # what Serve stores
    assert ADMIN not in repr(spec) and ADMIN.encode() not in pickle.dumps(spec)


def _fails(*args: str, environment: dict[str, str] | None = None, prelude: str = "", timeout: float = 120) -> str:
    code = f"{prelude}from modelmill.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment or dict(os.environ))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return " ".join(done.stderr.split())


def test_options_that_do_not_apply_are_refused(versions: Path) -> None:
    assert "--replicas N instead" in _fails(str(versions), "--engine", "ray", "--workers", "2")
    assert "--replicas 2 applies to --engine ray" in _fails(str(versions), "--replicas", "2")
    assert "not supported with --engine ray yet" in _fails(str(versions), "--engine", "ray", "--log", "sqlite:///x.db")
    assert "at least one replica" in _fails(str(versions), "--engine", "ray", "--replicas", "0")
    assert "at least one thread" in _fails(str(versions), "--engine", "ray", "--threads", "0")


def test_an_unreachable_cluster_is_named(versions: Path) -> None:
    port = free_port()
    message = _fails(str(versions), "--engine", "ray", environment={**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert f"no Ray cluster answers at 127.0.0.1:{port} (RAY_ADDRESS)" in message


def test_without_ray_the_install_hint_is_given(versions: Path) -> None:
    blocked = "import sys; sys.modules['ray'] = None; "  # what an environment without the extra sees
    message = _fails(str(versions), "--engine", "ray", prelude=blocked)
    assert "pip install 'modelmill[ray]'" in message
