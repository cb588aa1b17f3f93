"""The prediction store: SQLite or PostgreSQL behind SQLAlchemy.

Five tables: ``modelmill_log_info`` (the schema version, the model whose records these are,
the fingerprint of the PII key), ``modelmill_predictions`` (one row per served record, keyed
by request id and row, so that replaying a spool twice stores nothing twice),
``modelmill_labels`` (the truth that arrives later, by the same key),
``modelmill_shadow`` (a challenger's predictions of the same records, run beside the
champion in shadow mode) and ``modelmill_decisions`` (the audit of retraining: every
challenger promoted or refused, why, its figures and its lineage). A store is opened
with its migrations run and its model checked, so that records of two different models
never mix in one table.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from modelmill.errors import ServingError
from modelmill.monitoring.identity import ModelIdentity
from modelmill.monitoring.tables import (MIGRATIONS, PREDICTION_COLUMNS, decisions, info, labels, predictions,
                                         shadow)

ROWS_PER_STATEMENT = 100  # 900 parameters: far below SQLite's and PostgreSQL's limits


def display_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "the given URL"


class LogStore:
    """One prediction store. Safe to share between threads (SQLAlchemy's pool)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        from modelmill.data.sources import installed_driver

        self.label = display_url(url)
        try:
            parsed = sa.make_url(url)
        except exc.ArgumentError:
            raise ServingError(f"serving.log.url: not a database URL: {url!r}. Fix: sqlite:///monitor.db "
                               "or postgresql://user@host/database") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ServingError(f"serving.log.url: the prediction log keeps its records in SQLite or "
                               f"PostgreSQL, not {self.dialect!r} ({self.label})")
        self.sqlite_path: Path | None = None
        connect_args: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file:"):
                raise ServingError(f"serving.log.url: {self.label} is not a file; the log must outlive "
                                   "the process. Fix: sqlite:///monitor.db")
            self.sqlite_path = Path(database).expanduser().resolve()
            if not create and not self.sqlite_path.is_file():  # SQLite would create an empty one
                raise ServingError(f"no prediction log at {self.sqlite_path}. Fix: check the path (serve "
                                   "with --log sqlite:///FILE writes one)")
            if not self.sqlite_path.parent.is_dir():
                raise ServingError(f"serving.log.url: the folder of {self.sqlite_path} does not exist. "
                                   "Fix: create it, or give another path")
            parsed = parsed.set(database=str(self.sqlite_path))
            connect_args = {"timeout": 30}  # the busy timeout: workers take turns writing
        else:
            parsed = parsed.set(drivername=installed_driver(parsed.drivername))
            # A stopped server fails fast (the writer spools), a hung one is cut off.
            connect_args = {"connect_timeout": 5, "options": "-c statement_timeout=30000"}
        self.url = parsed.render_as_string(hide_password=False)  # for the shipper process; never shown
        try:
            self.engine = sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True,
                                           pool_size=2, max_overflow=2)
        except exc.NoSuchModuleError:
            raise ServingError(f"serving.log.url: SQLAlchemy knows no database {parsed.drivername!r}") from None
        except ImportError as error:
            raise ServingError(f"serving.log.url: the database driver is not installed ({error}). "
                               "Fix: pip install 'modelmill[postgres]'") from None
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    # ------------------------------------------------------------ opening

    def open(self, identity: ModelIdentity | None, *, pii_fingerprint: str | None = None,
             record_key: dict[str, Any] | None = None) -> None:
        """Create or migrate the tables, then check (or record) the model and the PII key.
        ``identity`` None: any model's store (the ``log`` commands read what is there)."""
        try:
            with self.engine.begin() as connection:
                version = self._migrate(connection)
                known = {str(k): str(v) for k, v in connection.execute(sa.select(info.c.key, info.c.value))}
                if version == 0 and identity is None:
                    raise ServingError(f"{self.label} holds no prediction log yet (serve a model with "
                                       "--log to start one)")
                if identity is not None:
                    self._check_model(connection, known.get("model"), identity)
                if record_key is not None:  # which column keys the records, and whether it is hashed
                    self._put(connection, known, "record_key", json.dumps(record_key, sort_keys=True))
                if pii_fingerprint is not None:
                    stored = known.get("pii_key")
                    if stored is None:
                        connection.execute(info.insert().values(key="pii_key", value=pii_fingerprint))
                    elif stored != pii_fingerprint:
                        raise ServingError(
                            f"the PII key does not match the one the prediction log at {self.label} was "
                            f"written with (fingerprint {stored}, this key's {pii_fingerprint}): its hashed "
                            "values would never match. Fix: set the original key, or log to a new store")
        except exc.SQLAlchemyError as error:
            raise ServingError(f"cannot open the prediction log at {self.label}: {database_message(error)}. "
                               "Fix: check the URL, that the server runs and the user may create tables") from None

    def _migrate(self, connection: sa.Connection) -> int:
        """Run the missing migrations; the version the store had before."""
        info.create(connection, checkfirst=True)
        if self.dialect == "postgresql":  # two workers opening a new store at once take turns
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(7130012016)"))
        row = connection.execute(sa.select(info.c.value).where(info.c.key == "schema_version")).first()
        before = int(row[0]) if row else 0
        if before > len(MIGRATIONS):
            raise ServingError(f"the prediction log at {self.label} has schema version {before}, newer than "
                               f"this modelmill's {len(MIGRATIONS)}. Fix: upgrade modelmill")
        for step in MIGRATIONS[before:]:
            step(connection)
        if before != len(MIGRATIONS):
            value = str(len(MIGRATIONS))
            if row:
                connection.execute(info.update().where(info.c.key == "schema_version").values(value=value))
            else:
                connection.execute(info.insert().values(key="schema_version", value=value))
        return before

    def _check_model(self, connection: sa.Connection, stored: str | None, identity: ModelIdentity) -> None:
        if stored is None:
            connection.execute(info.insert().values(key="model", value=identity.as_json()))
            return
        differences = ModelIdentity.from_json(stored).differences(identity)
        if differences:
            raise ServingError(f"the prediction log at {self.label} holds another model's records: "
                               + "; ".join(differences) + ". Fix: log this model to another store "
                               "(--log URL)")
        if stored != identity.as_json():  # the same model with new classes, say: keep the newest
            connection.execute(info.update().where(info.c.key == "model").values(value=identity.as_json()))

    @staticmethod
    def _put(connection: sa.Connection, known: dict[str, str], key: str, value: str) -> None:
        if key not in known:
            connection.execute(info.insert().values(key=key, value=value))
        elif known[key] != value:
            connection.execute(info.update().where(info.c.key == key).values(value=value))

    def info(self) -> dict[str, str]:
        with self.engine.connect() as connection:
            return {str(k): str(v) for k, v in connection.execute(sa.select(info.c.key, info.c.value))}

    def identity(self) -> ModelIdentity:
        with self.engine.connect() as connection:
            value = connection.execute(sa.select(info.c.value).where(info.c.key == "model")).scalar()
        if value is None:
            raise ServingError(f"{self.label} holds no prediction log yet")
        return ModelIdentity.from_json(value)

    # ------------------------------------------------------------ writing

    def write_predictions(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows (tuples in PREDICTION_COLUMNS order) in one transaction; a (request
        id, row) already stored is skipped, so replays are idempotent. This runs for every
        served record, so it is the driver's own SQL with many rows per statement: half the
        time of an executemany, and the serving threads get the GIL back once per statement
        rather than once per row."""
        if not rows:
            return
        with self.engine.begin() as connection:
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                part = rows[start:start + ROWS_PER_STATEMENT]
                connection.exec_driver_sql(self._insert_sql(len(part)), tuple(v for row in part for v in row))

    @functools.lru_cache(maxsize=4)  # noqa: B019 (one store per process: the cache holds it, as it should)
    def _insert_sql(self, count: int) -> str:
        marker = "?" if self.dialect == "sqlite" else "%s"  # pysqlite's qmark, psycopg's format style
        one = "(" + ", ".join([marker] * len(PREDICTION_COLUMNS)) + ")"
        columns = ", ".join(f'"{name}"' for name in PREDICTION_COLUMNS)
        verb, tail = ("INSERT OR IGNORE", "") if self.dialect == "sqlite" else ("INSERT", " ON CONFLICT DO NOTHING")
        return f"{verb} INTO {predictions.name} ({columns}) VALUES {', '.join([one] * count)}{tail}"

    def write_labels(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace labels (a corrected label replaces the earlier one)."""
        if not rows:
            return
        statement = self._insert(labels)
        statement = statement.on_conflict_do_update(
            index_elements=["request_id", "row"],
            set_={"value": statement.excluded.value, "labelled_at": statement.excluded.labelled_at})
        with self.engine.begin() as connection:
            connection.execute(statement, list(rows))

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        return insert(table)

    def delete_before(self, cutoff: float) -> int:
        """Retention: records logged before ``cutoff`` (epoch seconds) and their labels, and
        labels received before it that never found their record."""
        with self.engine.begin() as connection:
            old = sa.select(predictions.c.request_id).where(predictions.c.logged_at < cutoff)
            connection.execute(labels.delete().where(labels.c.request_id.in_(old)))
            deleted = int(connection.execute(predictions.delete().where(predictions.c.logged_at < cutoff)).rowcount)
            joined = sa.select(predictions.c.request_id).where(predictions.c.request_id == labels.c.request_id,
                                                               predictions.c.row == labels.c.row)
            connection.execute(labels.delete().where(labels.c.labelled_at < cutoff, ~sa.exists(joined)))
            connection.execute(shadow.delete().where(shadow.c.logged_at < cutoff))
            return deleted

    def write_shadow(self, rows: Sequence[dict[str, Any]]) -> None:
        """A challenger's predictions of served records (``request_id``, ``row``, ``version``,
        ``logged_at``, ``latency_ms``, ``outputs``); a record stored twice is kept once."""
        if not rows:
            return
        statement = self._insert(shadow).on_conflict_do_nothing(index_elements=["request_id", "row", "version"])
        with self.engine.begin() as connection:
            connection.execute(statement, list(rows))

    def write_decision(self, decision: dict[str, Any]) -> int:
        """One audit record of retraining (the columns of ``modelmill_decisions`` but ``id``;
        ``figures`` and ``lineage`` as plain data); its id."""
        values = {**decision, "figures": json.dumps(decision.get("figures") or {}, sort_keys=True),
                  "lineage": json.dumps(decision.get("lineage") or {}, sort_keys=True)}
        with self.engine.begin() as connection:
            key = connection.execute(decisions.insert().values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def decisions(self, *, latest: int | None = None) -> list[dict[str, Any]]:
        """The audit records, oldest first (only the newest ``latest`` when given)."""
        query = sa.select(decisions).order_by(decisions.c.id.desc())
        if latest is not None:
            query = query.limit(latest)
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        for row in rows:
            row["figures"], row["lineage"] = json.loads(row["figures"]), json.loads(row["lineage"])
        return rows[::-1]

    # ------------------------------------------------------------ reading

    def find(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which (request id, row) pairs have a stored prediction."""
        found: set[tuple[str, int]] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                query = sa.select(predictions.c.request_id, predictions.c.row).where(
                    sa.tuple_(predictions.c.request_id, predictions.c.row).in_(chunk))
                found.update((str(r), int(n)) for r, n in connection.execute(query))
        return found

    def find_keys(self, record_keys: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
        """The predictions of each record key."""
        found: dict[str, list[tuple[str, int]]] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(record_keys), 500):
                query = sa.select(predictions.c.record_key, predictions.c.request_id, predictions.c.row).where(
                    predictions.c.record_key.in_(record_keys[start:start + 500]))
                for key, request_id, row in connection.execute(query):
                    found.setdefault(str(key), []).append((str(request_id), int(row)))
        return found

    def labels_since(self, moment: float) -> int:
        """Labels received at or after ``moment`` (epoch seconds), corrections included."""
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(labels)
                                          .where(labels.c.labelled_at >= moment)).scalar() or 0)

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar() or 0)

    def read(self, *, since: float | None = None, until: float | None = None, labelled_only: bool = False,
             latest: int | None = None, chunk_rows: int = 50_000) -> Iterator[list[dict[str, Any]]]:
        """Stored records (with their label, or None) in logging order, in chunks; only the
        newest ``latest`` of them when given."""
        query = sa.select(predictions, labels.c.value.label("label"), labels.c.labelled_at).select_from(
            predictions.outerjoin(labels, sa.and_(labels.c.request_id == predictions.c.request_id,
                                                  labels.c.row == predictions.c.row)))
        if since is not None:
            query = query.where(predictions.c.logged_at >= since)
        if until is not None:
            query = query.where(predictions.c.logged_at < until)
        if labelled_only:
            query = query.where(labels.c.value.is_not(None))
        order = (predictions.c.logged_at, predictions.c.request_id, predictions.c.row)
        if latest is not None:  # the newest rows by the index on logged_at, then back in logging order
            newest = query.order_by(*(column.desc() for column in order)).limit(latest).subquery()
            query = sa.select(newest).order_by(newest.c.logged_at, newest.c.request_id, newest.c.row)
        else:
            query = query.order_by(*order)
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
            for partition in result.mappings().partitions(chunk_rows):
                yield [dict(row) for row in partition]

    def read_shadow(self, version: str) -> list[dict[str, Any]]:
        """Every record a challenger ``version`` predicted in shadow: its outputs beside the
        champion's, the version that answered, and the label (None where none arrived)."""
        query = sa.select(shadow.c.request_id, shadow.c.row, shadow.c.logged_at,
                          shadow.c.latency_ms.label("shadow_latency_ms"), shadow.c.outputs.label("shadow_outputs"),
                          predictions.c.version, predictions.c.latency_ms, predictions.c.outputs,
                          labels.c.value.label("label")).select_from(
            shadow.join(predictions, sa.and_(predictions.c.request_id == shadow.c.request_id,
                                             predictions.c.row == shadow.c.row))
            .outerjoin(labels, sa.and_(labels.c.request_id == shadow.c.request_id, labels.c.row == shadow.c.row))
        ).where(shadow.c.version == version).order_by(shadow.c.logged_at, shadow.c.request_id, shadow.c.row)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    """WAL: readers never block the writer and a commit is one append; NORMAL sync is safe
    in WAL mode (a power cut may lose the last commits, never corrupt the file)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages (default 2): a large log's indexes stay in memory
    cursor.close()


def database_message(error: BaseException) -> str:
    """The database's own words (as a SQL source's errors give them), first line only."""
    from modelmill.data.sources import database_message as full_message

    text = full_message(error)
    return text.splitlines()[0] if text else type(error).__name__
