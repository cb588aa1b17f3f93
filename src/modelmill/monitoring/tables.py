"""The prediction store's tables and their migrations (the schema :mod:`modelmill.monitoring.store`
creates, upgrades and reads): ``modelmill_log_info``, ``modelmill_predictions``,
``modelmill_labels``, ``modelmill_shadow`` and ``modelmill_decisions``."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

metadata = sa.MetaData()
info = sa.Table(
    "modelmill_log_info", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
predictions = sa.Table(
    "modelmill_predictions", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("logged_at", sa.Float, nullable=False, index=True),  # seconds since the epoch, UTC
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.String(256), nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("record_key", sa.String(256), nullable=True),
    sa.Column("inputs", sa.Text, nullable=False),  # JSON object: column → value as stored
    sa.Column("outputs", sa.Text, nullable=False),  # JSON object: the prediction as answered
    # only records that have a key are indexed by it (most logs have none)
    sa.Index("ix_modelmill_predictions_record_key", "record_key",
             sqlite_where=sa.text("record_key IS NOT NULL"), postgresql_where=sa.text("record_key IS NOT NULL")),
)
labels = sa.Table(
    "modelmill_labels", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.Text, nullable=False),  # JSON
    sa.Column("labelled_at", sa.Float, nullable=False),
)
shadow = sa.Table(
    "modelmill_shadow", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.String(256), primary_key=True),  # the challenger's version
    sa.Column("logged_at", sa.Float, nullable=False, index=True),
    sa.Column("latency_ms", sa.Float, nullable=False),  # the challenger's own model call, per record
    sa.Column("outputs", sa.Text, nullable=False),
)
decisions = sa.Table(
    "modelmill_decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decided_at", sa.Float, nullable=False, index=True),
    sa.Column("outcome", sa.String(32), nullable=False),  # promoted, refused, shadowing, failed
    sa.Column("trigger", sa.String(256), nullable=False),  # what started it: manual, drift, decay, labels, schedule
    sa.Column("champion", sa.String(256), nullable=True),  # the version served when it was decided
    sa.Column("challenger", sa.String(256), nullable=True),  # the version it became (or would have)
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("figures", sa.Text, nullable=False),  # JSON: the comparisons' numbers
    sa.Column("lineage", sa.Text, nullable=False),  # JSON: the challenger bundle's lineage
)
PREDICTION_COLUMNS = [c.name for c in predictions.columns]


def _create_v1(connection: sa.Connection) -> None:
    metadata.create_all(connection, tables=[predictions, labels])


def _add_shadow_and_decisions(connection: sa.Connection) -> None:
    metadata.create_all(connection, tables=[shadow, decisions])


# Migration i brings a store from schema version i to i + 1. A change of the tables above
# appends one here (never edits an old one), so stores written by older releases upgrade
# in place when a newer one opens them.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [_create_v1, _add_shadow_and_decisions]
