"""The prediction log behind the real ``modelmill serve`` (its own process, real uvicorn on
loopback) with SQLite: under load with two workers nothing is lost silently and /metrics
sums the workers, ``kill -9`` loses at most one flush interval and the restart replays the
spool once, personal data is never stored or logged in clear, and mistakes at start are
clear errors (exit 2)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelmill.monitoring.records import sampled_in
from tests.monitoring.conftest import PII_KEY
from tests.monitoring.service import (PLANTED, Load, answered_keys, log_counters, settled, start_server,
                                     stop_server, stored_keys)

PII_ENV = {"MODELMILL_PII_KEY": PII_KEY}


@pytest.mark.timeout(420)
def test_sqlite_two_workers_sampled_under_load_count_every_record(pii_models: Path, tmp_path: Path) -> None:
    database = tmp_path / "monitor.db"
    url = f"sqlite:///{database}"
    server = start_server(pii_models, "--workers", "2", "--log", url, "--log-sample", "0.1",
                          "--log-flush-interval", "0.5", env=PII_ENV)
    try:
        load = Load(server.url, clients=8, records=4).start()
        time.sleep(20)
        load.stop()
        counters = settled(server.url, load.served)
    finally:
        assert stop_server(server) == 0, server.text()
    assert load.failed == [] and load.served > 2000, (load.failed[:5], load.served)
    # /metrics sums both workers: any scrape sees every request and every record
    assert counters["requests"] == len(load.answered) and counters["served"] == load.served, counters
    assert counters["logged"] + counters["sampled_out"] + counters["dropped"] == counters["served"], counters
    assert counters["dropped"] == 0, counters
    stored = stored_keys(url)
    assert len(stored) == len(set(stored)) == counters["logged"]  # 0 duplicates
    expected = {key for key in answered_keys(load) if sampled_in(key[0], key[1], 0.1)}
    assert set(stored) == expected  # exactly the records the hash keeps
    assert abs(len(stored) / load.served - 0.1) <= 0.01, len(stored) / load.served
    # personal data: never in clear in the store, its spool, or the server's output
    files = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for value in PLANTED:
        assert value.encode() not in files and value not in server.text(), value


@pytest.mark.timeout(420)
def test_kill_9_loses_at_most_one_flush_interval_and_the_restart_replays_once(pii_models: Path,
                                                                             tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    interval = 1.0
    server = start_server(pii_models, "--log", url, "--log-flush-interval", str(interval), env=PII_ENV)
    load = Load(server.url, clients=4, records=2).start()
    time.sleep(6)
    killed_at = time.monotonic()
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(30)
    load.stop()
    answered = [a for a in load.answered if a.at <= killed_at]
    before_restart = set(stored_keys(url))
    restarted = start_server(pii_models, "--log", url, "--log-flush-interval", str(interval), env=PII_ENV)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the spool the killed process left is shipped
            if not list((tmp_path / "monitor.db-spool").glob("*.tsv")):
                break
            time.sleep(0.2)
        replayed = log_counters(restarted.url)["replayed"]
    finally:
        assert stop_server(restarted) == 0, restarted.text()
    stored = stored_keys(url)
    assert len(stored) == len(set(stored))  # the replay stored nothing twice
    missing = {(a.request_id, a.at) for a in answered if (a.request_id, 0) not in set(stored)}
    # what was lost had been answered within the last flush interval (plus the time one
    # transaction takes) before the kill: the records still in memory
    assert all(at > killed_at - interval - 0.25 for _, at in missing), \
        sorted(killed_at - at for _, at in missing)[-5:]
    rate = len(answered) / 6
    assert len(missing) <= rate * (interval + 0.25), (len(missing), rate)
    # the killed server's shipper process wrote what it could when its server vanished; the
    # restarted server replayed the rest of the spool, and nothing is left in it
    assert 0 <= replayed <= len(set(stored) - before_restart)
    assert not list((tmp_path / "monitor.db-spool").glob("*.tsv"))


def test_bad_stores_at_start_are_clear_errors(pii_models: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from modelmill.errors import ServingError
    from modelmill.serving.server import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    # the real command: exit 2, one message, no trace, no password
    server = start_server(pii_models, "--log", f"postgresql://monitor:s3cret@127.0.0.1:{closed}/monitor",
                          env=PII_ENV, wait=False)
    assert server.process.wait(120) == 2
    time.sleep(0.2)
    assert f"cannot open the prediction log at postgresql://monitor:***@127.0.0.1:{closed}/monitor" in server.flat()
    assert "Traceback" not in server.text() and "s3cret" not in server.text()
    # the same check, in process (serve() fails before it loads a model or listens)
    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.begin() as connection:  # a store that holds another model's records
        connection.exec_driver_sql("CREATE TABLE modelmill_log_info (key VARCHAR(64) PRIMARY KEY, value TEXT)")
        connection.exec_driver_sql("INSERT INTO modelmill_log_info VALUES ('schema_version', '1'), ('model', "
                                   "'{\"name\": \"tiny\", \"inputs\": {\"x\": \"number\"}, \"target\": "
                                   "{\"name\": \"label\", \"type\": \"binary\"}}')")
        connection.exec_driver_sql("CREATE TABLE modelmill_predictions (request_id VARCHAR(64))")
    other.dispose()
    cases = [
        ("sqlite-but-not-a-url", "not a database URL"),
        (f"sqlite:///{tmp_path}/missing/monitor.db", "does not exist"),
        (f"sqlite:///{tmp_path / 'other.db'}", "holds another model's records: input 'colour' is new in the served model"),
    ]
    for url, expected in cases:
        with pytest.raises(ServingError, match=re.escape(expected)):
            serve(pii_models, {"port": 0, "log": {"url": url}})
    monkeypatch.setenv("MODELMILL_PII_KEY", "")  # personal data without a key
    with pytest.raises(ServingError, match="MODELMILL_PII_KEY is not set"):
        serve(pii_models, {"port": 0, "log": {"url": f"sqlite:///{tmp_path / 'new.db'}"}})
