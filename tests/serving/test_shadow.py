"""Shadow mode: a challenger from ``.shadow/`` predicts the logged records beside the served
model, over real HTTP with a SQLite log; the answers stay the champion's alone."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from modelmill.api import Pipeline
from modelmill.cli import app
from modelmill.errors import ServingError
from modelmill.monitoring import store as store_module
from modelmill.monitoring.records import sampled_in
from modelmill.serving.metrics import ServerMetrics
from modelmill.serving.server import load_state
from modelmill.serving.shadow import ShadowRunner
from tests.conftest import base_config, make_frame
from tests.serving.conftest import TOKEN, live_server, record

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE = 0.5


@pytest.fixture(scope="session")
def narrow_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test pipeline without its text column: another model for the log."""
    config = base_config(training={"epochs": 1, "batch_size": 64, "progress": False, "seed": 3})
    config["features"] = [f for f in config["features"] if f["name"] != "review"]
    return Pipeline(config).fit(make_frame(rows=200, seed=3)).save(tmp_path_factory.mktemp("narrow") / "bundle")


@pytest.fixture
def models(trained_versions: Path, narrow_bundle: Path, tmp_path: Path) -> Path:
    """Version 1 served; in .shadow/: ``two`` (the same pipeline trained on other data with
    another seed), ``narrow`` (other inputs) and ``broken`` (a damaged copy of two)."""
    root = tmp_path / "models"
    shutil.copytree(trained_versions / "1", root / "1")
    shutil.copytree(trained_versions / "2", root / ".shadow" / "two")
    shutil.copytree(narrow_bundle, root / ".shadow" / "narrow")
    shutil.copytree(trained_versions / "2", root / ".shadow" / "broken")
    weights = root / ".shadow" / "broken" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")  # fails verification
    return root


def logged(tmp_path: Path) -> dict[str, Any]:
    return {"url": f"sqlite:///{tmp_path / 'monitor.db'}", "flush_interval_s": 0.05, "sample": SAMPLE}


def send(http: httpx.Client, prefix: str, requests: int = 12) -> dict[tuple[str, int], dict[str, Any]]:
    """Requests of 1 to 3 records; each answered prediction by (request id, row)."""
    answered = {}
    for i in range(requests):
        records = [record(x=(i * 3 + j) / 7 - 2.5, colour=["red", "green", "blue"][j]) for j in range(1 + i % 3)]
        answer = http.post("/v1/predict", json={"instances": records}, headers={"X-Request-ID": f"{prefix}{i}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == "1"
        for row, prediction in enumerate(answer.json()["predictions"]):
            answered[(f"{prefix}{i}", row)] = prediction
    return answered


def kept(answered: dict[tuple[str, int], Any]) -> set[tuple[str, int]]:
    return {key for key in answered if sampled_in(key[0], key[1], SAMPLE)}


def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def shadow_keys(live: Any) -> set[tuple[str, int]]:
    """Every (request id, row) in the shadow table, joined to a champion's row or not."""
    with live.state.prediction_log.store.engine.connect() as connection:
        rows = connection.execute(sa.select(store_module.shadow.c.request_id, store_module.shadow.c.row))
        return {(request_id, row) for request_id, row in rows}


def logged_count(live: Any) -> int:
    totals = live.state.prediction_log.totals
    return int(totals["logged"] + totals["sampled_out"])


def test_a_challenger_predicts_every_logged_record_beside_the_champion(models: Path, tmp_path: Path,
                                                                       admin_token: str) -> None:
    with live_server(models, log=logged(tmp_path)) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        assert http.get("/v1/model").json()["shadow"] is None
        alone = send(http, "alone")
        started = http.post("/v1/admin/shadow", json={"version": "two"})
        assert started.status_code == 200, started.text
        assert started.json()["shadow"]["version"] == "two" and started.json()["previous"] is None
        shadowed = send(http, "shadowed")
        # the answers are the champion's alone: what the same server answered before shadowing
        assert {(key.removeprefix("shadowed"), row): p for (key, row), p in shadowed.items()} == \
            {(key.removeprefix("alone"), row): p for (key, row), p in alone.items()}
        expected = kept(shadowed)
        assert 0 < len(expected) < len(shadowed)  # the log's sampling chose; the shadow followed
        wait_for(lambda: logged_count(live) >= len(alone) + len(shadowed)
                 and len(live.state.prediction_log.store.read_shadow("two")) >= len(expected), "the rows")
        rows = live.state.prediction_log.store.read_shadow("two")
        assert {(row["request_id"], row["row"]) for row in rows} == expected == shadow_keys(live)
        differ = 0
        for row in rows:
            champion, challenger = json.loads(row["outputs"]), json.loads(row["shadow_outputs"])
            assert champion == shadowed[(row["request_id"], row["row"])] and row["version"] == "1"
            assert challenger.keys() == champion.keys() and row["shadow_latency_ms"] > 0
            differ += challenger != champion
        assert differ > 0  # another training: its outputs differ in places
        info = http.get("/v1/model").json()["shadow"]
        assert info["version"] == "two" and info["records"] == len(expected) and info["dropped"] == 0
        metrics = http.get("/metrics").text
        assert f'modelmill_shadow_records_total{{outcome="predicted"}} {float(len(expected))}' in metrics
        assert 'modelmill_shadow_info{version="two"} 1.0' in metrics

        stopped = http.delete("/v1/admin/shadow")
        assert stopped.status_code == 200 and stopped.json() == {**stopped.json(), "shadow": None, "previous": "two"}
        assert http.get("/v1/model").json()["shadow"] is None
        assert 'modelmill_shadow_info{version="two"} 0.0' in http.get("/metrics").text
        before = shadow_keys(live)
        after = send(http, "after")
        wait_for(lambda: logged_count(live) >= len(alone) + len(shadowed) + len(after), "the log")
        time.sleep(0.2)
        assert shadow_keys(live) == before
        assert http.delete("/v1/admin/shadow").json()["previous"] is None  # stopping twice is no error


def test_shadow_mode_refuses_what_cannot_be_shadowed(models: Path, tmp_path: Path, admin_token: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with live_server(models) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        no_log = http.post("/v1/admin/shadow", json={"version": "two"})
        assert no_log.status_code == 409 and no_log.json()["error"]["code"] == "shadow_needs_log", no_log.text
        assert "Fix: serve with --log" in no_log.json()["error"]["message"]
    with live_server(models, log=logged(tmp_path)) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        def refused(body: Any, status: int, code: str) -> str:
            answer = http.post("/v1/admin/shadow", json=body)
            assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
            assert str(models) not in answer.text and "Traceback" not in answer.text
            return str(answer.json()["error"]["message"])

        assert "input 'review' is in the store but not in the served model" in \
            refused({"version": "narrow"}, 409, "shadow_mismatch")
        assert "'broken' failed to load or warm up" in refused({"version": "broken"}, 409, "load_failed")
        assert "known: broken, narrow, two" in refused({"version": "three"}, 404, "unknown_version")
        assert "known" in refused({"version": "1"}, 404, "unknown_version")  # a version is no challenger
        for name in ("..", "../1", "..%2f1", "/etc/passwd", ".hidden", "a/b", ""):
            refused({"version": name}, 400, "invalid_version")
        refused({}, 422, "invalid_request")
        refused({"version": "two", "more": 1}, 422, "invalid_request")
        assert http.post("/v1/admin/shadow", json={"version": "two"}, headers={"Authorization": "Bearer no"}) \
            .status_code == 401
        assert http.delete("/v1/admin/shadow", headers={"Authorization": ""}).status_code == 401
        monkeypatch.delenv("MODELMILL_ADMIN_TOKEN")
        assert http.post("/v1/admin/shadow", json={"version": "two"}).json()["error"]["code"] == "admin_disabled"
        assert http.delete("/v1/admin/shadow").status_code == 403
        assert http.get("/v1/model").json()["shadow"] is None
        assert live.state.shadow is None and live.state.current.version == "1"


def test_serve_shadow_starts_with_a_challenger(models: Path, tmp_path: Path) -> None:
    with live_server(models, log=logged(tmp_path), shadow="two") as live, httpx.Client(base_url=live.url) as http:
        assert http.get("/v1/model").json()["shadow"]["version"] == "two"
        expected = kept(send(http, "r", requests=6))
        wait_for(lambda: shadow_keys(live) >= expected, "the shadow rows")
        assert shadow_keys(live) == expected


@pytest.fixture
def serving_logger() -> Any:
    """``serve`` sets up the service's logger (its own handler, no propagation): put it back."""
    logger = logging.getLogger("modelmill.serving")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def test_serve_shadow_errors_are_one_clear_message(models: Path, tmp_path: Path, serving_logger: None) -> None:
    log = ["--log", f"sqlite:///{tmp_path / 'm.db'}"]
    for args, message in [(["--shadow", "two"], "--shadow two: shadow mode needs the prediction log"),
                          (["--shadow", "three", *log], "no challenger 'three' in .shadow/ of the model folder"),
                          (["--shadow", "../1", *log], "invalid name '../1'")]:
        result = CliRunner().invoke(app, ["serve", str(models), "--port", "0", *args])
        assert isinstance(result.exception, ServingError) and message in str(result.exception), result.output
    with pytest.raises(ServingError, match="'narrow' is not the model the prediction log holds"):
        load_state(models, {"log": logged(tmp_path), "shadow": "narrow"})


def test_workers_follow_the_shadow_through_the_selection(models: Path, tmp_path: Path) -> None:
    """Two workers' states sharing one selection file: a shadow started or stopped on one is
    started or stopped on the other."""
    selection = tmp_path / "selection.json"
    overrides = {"log": logged(tmp_path)}
    one, other = (load_state(models, overrides, selection=selection) for _ in range(2))

    async def scenario() -> None:
        follower = asyncio.create_task(other.follow_selection(selection, interval=0.05))
        try:
            await one.change_shadow("two")
            assert json.loads(selection.read_bytes())["shadow"] == "two"
            while other.shadow is None:
                await asyncio.sleep(0.05)
            assert other.shadow.version == "two"
            await one.change_shadow(None)
            while other.shadow is not None:
                await asyncio.sleep(0.05)
        finally:
            follower.cancel()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        for state in (one, other):
            assert state.prediction_log is not None
            state.prediction_log.close(5.0)


def test_an_admin_call_on_a_worker_behind_the_others_does_not_undo_their_change(models: Path, tmp_path: Path) -> None:
    """A reload answered by one worker, then a shadow change answered by another before its
    loop followed: the second catches up first, so it publishes the reload, not its stale
    version (which every worker, the first too, would then have gone back to)."""
    shutil.copytree(models / ".shadow" / "two", models / "2")
    selection = tmp_path / "selection.json"
    overrides = {"log": logged(tmp_path)}
    one, other = (load_state(models, overrides, selection=selection) for _ in range(2))

    async def scenario() -> None:
        assert one.current.version == other.current.version == "2"
        await one.reload("1")
        await other.change_shadow("two")  # no follower loop runs: only the catch-up can help
        assert other.current.version == "1" and other.history == ["2"]
        published = json.loads(selection.read_bytes())
        assert (published["version"], published["shadow"]) == ("1", "two")
        await other.change_shadow(None)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        for state in (one, other):
            assert state.prediction_log is not None
            state.prediction_log.close(5.0)


# ---------------------------------------------------------------- the runner alone


class _Model:
    version = "fake"

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if any(r["x"] == "bad" for r in records):
            raise ValueError("cannot take this record")
        return [{"label": "good", "label_probability": float(r["x"])} for r in records]


class _Store:
    label = "fake store"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.down = True

    def write_shadow(self, rows: list[dict[str, Any]]) -> None:
        if self.down:
            raise OSError("disk I/O error\nwith more lines")
        self.rows += rows


def _runner(store: _Store, **settings: Any) -> ShadowRunner:
    return ShadowRunner(_Model(), store, ServerMetrics(), sample=1.0,  # type: ignore[arg-type]
                        **{"batch_size": 4, "interval_s": 0.01, **settings})


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_failing_store_or_record_costs_only_its_rows() -> None:
    store = _Store()
    runner = _runner(store)
    warnings = _Warnings()
    logging.getLogger("modelmill.serving").addHandler(warnings)
    runner.start()
    try:
        for i in range(5):
            runner.offer(f"down{i}", [{"x": 1}, {"x": 2}])
            time.sleep(0.03)
        wait_for(lambda: runner.totals["failed"] == 10, "the failures")
        assert len(warnings.lines) == 1 and "the store fake store refused" in warnings.lines[0]  # warned once
        assert "disk I/O error" in warnings.lines[0] and "with more lines" not in warnings.lines[0]
        store.down = False
        runner.offer("up", [{"x": 1}, {"x": "bad"}, {"x": 3}])
        wait_for(lambda: runner.totals["predicted"] == 2, "the rows")
        assert [(r["request_id"], r["row"]) for r in store.rows] == [("up", 0), ("up", 2)]
        assert json.loads(store.rows[1]["outputs"]) == {"label": "good", "label_probability": 3.0}
        assert runner.totals == {"predicted": 2, "dropped": 0, "failed": 11}
        assert "challenger fake failed on a record (ValueError: cannot take this record)" in warnings.lines[-1]
    finally:
        runner.stop(5)
        logging.getLogger("modelmill.serving").removeHandler(warnings)
    assert not runner._thread.is_alive()


def test_a_full_queue_drops_and_never_blocks() -> None:
    store = _Store()
    runner = _runner(store, queue_records=5)  # not started: nothing leaves the queue
    runner.offer("a", [{"x": 1}] * 3)
    started = time.perf_counter()
    runner.offer("b", [{"x": 1}] * 3)
    assert time.perf_counter() - started < 0.01
    assert runner.totals["dropped"] == 3 and len(runner._queue) == 3
    runner.stop()  # the 3 queued: dropped, counted
    runner.offer("c", [{"x": 1}])  # after stop: dropped, counted
    assert runner.totals["dropped"] == 7
