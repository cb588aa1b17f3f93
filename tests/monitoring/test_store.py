"""The prediction store: schema versions and migrations, one model per store, idempotent
writes, labels, retention, and clear errors for URLs that cannot work."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelmill.errors import ServingError
from modelmill.monitoring import store as store_module
from modelmill.monitoring.identity import ModelIdentity
from modelmill.monitoring.store import LogStore

IDENTITY = ModelIdentity("credit", {"age": "number", "job": "category"},
                         {"name": "risk", "type": "binary", "classes": ["bad", "good"]})


def row(request_id: str, n: int = 0, at: float = 1000.0) -> tuple[object, ...]:
    values = {"request_id": request_id, "row": n, "logged_at": at, "model": "credit", "version": "1",
              "latency_ms": 1.5, "record_key": None, "inputs": json.dumps({"age": 30, "job": "a"}),
              "outputs": json.dumps({"risk_predicted": "good"})}
    return tuple(values[column] for column in store_module.PREDICTION_COLUMNS)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitor.db'}"


def test_a_new_store_gets_the_current_schema_and_remembers_its_model(url: str) -> None:
    store = LogStore(url)
    store.open(IDENTITY)
    info = store.info()
    assert info["schema_version"] == str(len(store_module.MIGRATIONS))
    assert ModelIdentity.from_json(info["model"]) == IDENTITY
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_writes_are_idempotent_by_request_id_and_row(url: str) -> None:
    store = LogStore(url)
    store.open(IDENTITY)
    store.write_predictions([row("a"), row("a", 1), row("b")])
    store.write_predictions([row("a"), row("b"), row("c")])  # a replay of a spool segment, and one new
    assert store.count() == 4
    assert store.find([("a", 0), ("a", 1), ("a", 2), ("zz", 0)]) == {("a", 0), ("a", 1)}
    store.close()


def test_a_later_label_replaces_the_earlier_and_joins_on_read(url: str) -> None:
    store = LogStore(url)
    store.open(IDENTITY)
    store.write_predictions([row("a"), row("b")])
    store.write_labels([{"request_id": "a", "row": 0, "value": '"bad"', "labelled_at": 5.0}])
    store.write_labels([{"request_id": "a", "row": 0, "value": '"good"', "labelled_at": 6.0}])
    rows = [r for chunk in store.read() for r in chunk]
    assert {(r["request_id"], r["label"]) for r in rows} == {("a", '"good"'), ("b", None)}
    assert [r["request_id"] for chunk in store.read(labelled_only=True) for r in chunk] == ["a"]
    store.close()


def test_retention_deletes_old_records_and_their_labels(url: str) -> None:
    store = LogStore(url)
    store.open(IDENTITY)
    store.write_predictions([row("old", at=100.0), row("new", at=2000.0)])
    store.write_labels([{"request_id": "old", "row": 0, "value": '"bad"', "labelled_at": 101.0},
                        {"request_id": "never-came", "row": 0, "value": '"bad"', "labelled_at": 102.0},
                        {"request_id": "new", "row": 0, "value": '"good"', "labelled_at": 103.0}])
    assert store.delete_before(1000.0) == 1
    assert store.find([("old", 0), ("new", 0)]) == {("new", 0)}
    with store.engine.connect() as connection:
        kept = connection.execute(sa.select(store_module.labels.c.request_id)).scalars().all()
    assert kept == ["new"]  # the old record's label and a label that never found its record are gone
    store.close()


def test_a_store_of_another_model_is_refused_with_the_differences(url: str) -> None:
    LogStore(url).open(IDENTITY)
    other = ModelIdentity("credit", {"age": "category", "income": "number"},
                          {"name": "risk", "type": "binary", "classes": ["bad", "good"]})
    with pytest.raises(ServingError) as error:
        LogStore(url).open(other)
    message = str(error.value)
    assert "another model's records" in message
    assert "input 'job' is in the store but not in the served model" in message
    assert "input 'income' is new in the served model" in message
    assert "input 'age' is number in the store, category in the served model" in message
    assert "Fix: log this model to another store" in message
    # new classes of the same model are not a different model: the store keeps the newest
    grown = ModelIdentity("credit", IDENTITY.inputs, {"name": "risk", "type": "binary", "classes": ["bad", "ok"]})
    store = LogStore(url)
    store.open(grown)
    assert store.identity() == grown


def test_a_wrong_pii_key_is_refused(url: str) -> None:
    LogStore(url).open(IDENTITY, pii_fingerprint="aaaa")
    LogStore(url).open(IDENTITY, pii_fingerprint="aaaa")
    with pytest.raises(ServingError, match="PII key does not match"):
        LogStore(url).open(IDENTITY, pii_fingerprint="bbbb")


def test_migrations_run_once_in_order_and_a_newer_store_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    LogStore(url).open(IDENTITY)  # the current version, as this release writes it
    current = len(store_module.MIGRATIONS)
    ran: list[int] = []

    def add_column(connection: sa.Connection) -> None:
        ran.append(1)
        connection.exec_driver_sql("ALTER TABLE modelmill_predictions ADD COLUMN region VARCHAR(32)")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, add_column])
    store = LogStore(url)
    store.open(IDENTITY)
    store.open(IDENTITY)
    assert ran == [1] and store.info()["schema_version"] == str(current + 1)
    with store.engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("modelmill_predictions")}
    assert "region" in columns
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:current])
    with pytest.raises(ServingError, match=f"schema version {current + 1}, newer than this modelmill's {current}. "
                       "Fix: upgrade"):
        LogStore(url).open(IDENTITY)


def test_a_store_of_the_first_schema_upgrades_in_place(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
    LogStore(url).open(IDENTITY)  # as the first release wrote it: no shadow or decision tables
    monkeypatch.undo()
    store = LogStore(url)
    store.open(IDENTITY)
    with store.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    assert {"modelmill_shadow", "modelmill_decisions"} <= tables
    assert store.info()["schema_version"] == str(len(store_module.MIGRATIONS))


@pytest.mark.parametrize(("url", "expected"), [
    ("not a url", "not a database URL"),
    ("mysql://u@localhost/db", "SQLite or PostgreSQL, not 'mysql'"),
    ("sqlite://", "is not a file"),
    ("sqlite:////no/such/folder/monitor.db", "the folder of /no/such/folder/monitor.db does not exist"),
])
def test_urls_that_cannot_work_are_clear_errors(url: str, expected: str) -> None:
    with pytest.raises(ServingError, match=expected):
        LogStore(url)


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = LogStore(f"postgresql://monitor:s3cret@127.0.0.1:{port}/monitor")
    with pytest.raises(ServingError) as error:
        store.open(IDENTITY)
    message = str(error.value)
    assert "cannot open the prediction log at postgresql://monitor:***@127.0.0.1" in message
    assert "s3cret" not in message and "Fix:" in message


def test_reading_commands_never_create_an_empty_store(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="no prediction log at"):
        LogStore(f"sqlite:///{tmp_path / 'typo.db'}", create=False)
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_shadow_rows_and_decisions_on_both_databases(database: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import ExitStack

    from tests.postgres import postgres_cluster

    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'monitor.db'}" if database == "sqlite" else \
            stack.enter_context(postgres_cluster()).url
        monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
        LogStore(url).open(IDENTITY)  # written by the first schema: upgraded in place below
        monkeypatch.undo()
        store = LogStore(url)
        store.open(IDENTITY)
        try:
            store.write_predictions([row("a"), row("b", at=2000.0)])
            store.write_labels([{"request_id": "a", "row": 0, "value": json.dumps("bad"), "labelled_at": 1500.0}])
            shadowed = [{"request_id": r, "row": 0, "version": "2", "logged_at": at, "latency_ms": 0.5,
                         "outputs": json.dumps({"risk_predicted": "bad"})} for r, at in (("a", 1000.0), ("b", 2000.0))]
            store.write_shadow(shadowed)
            store.write_shadow(shadowed[:1])  # a replay stores nothing twice
            rows = store.read_shadow("2")
            assert [(r["request_id"], r["label"], r["version"]) for r in rows] == [("a", '"bad"', "1"), ("b", None, "1")]
            assert json.loads(rows[0]["outputs"]) == {"risk_predicted": "good"}  # the champion's, beside the shadow's
            assert store.read_shadow("3") == []
            first = store.write_decision({"decided_at": 3000.0, "outcome": "refused", "trigger": "drift",
                                          "champion": "1", "challenger": None, "reason": "not better",
                                          "figures": {"recent": {"gain": -0.01}}, "lineage": {"parent": "x"}})
            second = store.write_decision({"decided_at": 3100.0, "outcome": "promoted", "trigger": "labels",
                                           "champion": "1", "challenger": "2", "reason": "better",
                                           "figures": {}, "lineage": {}})
            assert second > first
            assert [(d["outcome"], d["figures"], d["lineage"]) for d in store.decisions()] == [
                ("refused", {"recent": {"gain": -0.01}}, {"parent": "x"}), ("promoted", {}, {})]
            assert [d["id"] for d in store.decisions(latest=1)] == [second]
            assert store.labels_since(1400.0) == 1 and store.labels_since(1600.0) == 0
            store.delete_before(1500.0)  # retention takes the shadow rows with their records
            assert [r["request_id"] for r in store.read_shadow("2")] == ["b"]
        finally:
            store.close()
