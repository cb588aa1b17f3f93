"""The prediction log behind the real ``modelmill serve`` (its own process, real uvicorn on
loopback) with a real PostgreSQL (the Debian package's server, started by the test): under
load every record is stored once, a store that goes away for 10 s costs no request and the
spool catches up when it returns, and a spool the disk refuses counts drops, never fails a
request."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from tests.monitoring.conftest import PII_KEY
from tests.monitoring.service import Load, answered_keys, log_counters, settled, start_server, stop_server, stored_keys
from tests.postgres import postgres_cluster

PII_ENV = {"MODELMILL_PII_KEY": PII_KEY}


@pytest.mark.timeout(420)
def test_postgres_stopped_under_load_costs_no_request_and_the_spool_catches_up(pii_models: Path) -> None:
    with postgres_cluster() as database:
        server = start_server(pii_models, "--log", database.url, "--log-flush-interval", "0.5", env=PII_ENV)
        try:
            load = Load(server.url, clients=8, records=2).start()
            time.sleep(5)
            database.stop()
            time.sleep(3)
            during = log_counters(server.url)
            time.sleep(7)
            database.start()
            time.sleep(5)
            load.stop()
            counters = settled(server.url, load.served, timeout=180)
        finally:
            assert stop_server(server) == 0, server.text()
        stored = stored_keys(database.url)
    assert load.failed == [], load.failed[:5]
    assert during["pending"] > 0, during  # records waited in the spool while the store was away
    assert counters["served"] == load.served and counters["logged"] == load.served, counters
    assert counters["dropped"] == 0 and counters["sampled_out"] == 0, counters
    assert len(stored) == len(set(stored)) and set(stored) == answered_keys(load)
    assert "cannot be written" in server.text() and "is back after" in server.text()


@pytest.mark.timeout(180)
def test_a_spool_the_disk_refuses_counts_drops_and_fails_no_request(pii_models: Path) -> None:
    def no_file_may_grow() -> None:  # the kernel answers every write with EFBIG, as a full disk would ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    with postgres_cluster() as database:
        server = start_server(pii_models, "--log", database.url, "--log-flush-interval", "0.3", env=PII_ENV,
                              preexec=no_file_may_grow)
        try:
            database.stop()
            load = Load(server.url, clients=4, records=2).start()
            time.sleep(4)
            load.stop()
            counters = settled(server.url, load.served)
        finally:
            assert stop_server(server) == 0, server.text()
    assert load.failed == [] and load.served > 0
    assert counters["dropped"] == counters["served"] == load.served and counters["logged"] == 0, counters
    assert "records dropped" in server.text()
