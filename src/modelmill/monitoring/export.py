"""The prediction log as a table: ``modelmill log export`` and ``modelmill log labels``.

An exported table has the model's input columns (as stored: personal data hashed, images
as configured), the prediction's columns, and the label under the target's name, so that
retraining reads it like the original training data and monitoring compares it with the
bundle's reference profile.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pandas as pd

from modelmill.errors import ModelmillError, ServingError
from modelmill.files import atomic_path
from modelmill.monitoring.labels import Label, check_label, store_labels
from modelmill.monitoring.records import hash_personal
from modelmill.monitoring.store import LogStore

META_COLUMNS = ["request_id", "row", "logged_at", "model", "version", "latency_ms"]
FORMATS = (".parquet", ".csv")


def parse_time(text: str | None, option: str) -> float | None:
    """``2026-12-01`` or an ISO time (UTC unless it says otherwise) as epoch seconds."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ServingError(f"{option}: {text!r} is not a date or time. Fix: 2026-12-01 or "
                           "2026-12-01T08:30 (UTC unless an offset is given)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def open_log(url: str) -> LogStore:
    """An existing prediction log, for reading or adding labels."""
    store = LogStore(url, create=False)
    try:
        store.open(None)
    except BaseException:
        store.close()
        raise
    return store


def log_frame(store: LogStore, *, since: float | None = None, until: float | None = None,
              labelled_only: bool = False, latest: int | None = None) -> pd.DataFrame:
    """The stored records as a table: metadata, inputs, prediction columns, the label under
    the target's name (None where none arrived) and when it arrived."""
    identity = store.identity()
    target = str(identity.target["name"])
    parts = []
    for chunk in store.read(since=since, until=until, labelled_only=labelled_only, latest=latest):
        meta = pd.DataFrame({column: [row[column] for row in chunk] for column in META_COLUMNS})
        inputs = pd.DataFrame.from_records([json.loads(row["inputs"]) for row in chunk],
                                           columns=list(identity.inputs))
        outputs = pd.DataFrame.from_records([json.loads(row["outputs"]) for row in chunk])
        truth = pd.DataFrame({target: [None if row["label"] is None else json.loads(row["label"]) for row in chunk],
                              "labelled_at": [row["labelled_at"] for row in chunk]})
        parts.append(pd.concat([meta, inputs, outputs, truth], axis=1))
    if not parts:
        frame = pd.DataFrame(columns=[*META_COLUMNS, *identity.inputs, target, "labelled_at"])
    else:
        frame = pd.concat(parts, ignore_index=True)
    for column in ("logged_at", "labelled_at"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


@dataclass(frozen=True)
class Exported:
    rows: int
    labelled: int
    path: Path


def export_log(url: str, output: Path, *, since: str | None = None, until: str | None = None,
               labelled_only: bool = False) -> Exported:
    if output.suffix.lower() not in FORMATS:
        raise ServingError(f"--output: {output.name} is neither .parquet nor .csv. Fix: name the file "
                           "recent.parquet or recent.csv")
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    store = open_log(url)
    try:
        frame = log_frame(store, since=start, until=end, labelled_only=labelled_only)
        target = str(store.identity().target["name"])
    finally:
        store.close()
    with atomic_path(output) as temporary:  # a failed export leaves no half-written file
        if output.suffix.lower() == ".parquet":
            frame.to_parquet(temporary, index=False)
        else:
            frame.to_csv(temporary, index=False)
    return Exported(len(frame), int(frame[target].notna().sum()) if len(frame) else 0, output)


def labels_from_table(frame: pd.DataFrame, store: LogStore, *, value_column: str | None,
                      key_column: str | None, source: str) -> list[Label]:
    """Labels from a table: ``request_id`` (and ``row``, default 0) or a key column, and the
    value column (default: the target's name, else ``label``)."""
    from modelmill.errors import DataError

    identity = store.identity()
    target = identity.target
    value_column = value_column or next((c for c in (str(target["name"]), "label") if c in frame.columns), None)
    if value_column is None or value_column not in frame.columns:
        raise DataError(f"no label column: expected {target['name']!r} or 'label' (or name it with --value); "
                        f"columns: {', '.join(map(str, frame.columns))}", source=source)
    key: bytes | None = None
    if key_column is not None:
        if key_column not in frame.columns:
            raise DataError(f"no key column {key_column!r}; columns: {', '.join(map(str, frame.columns))}",
                            source=source)
        recorded = json.loads(store.info().get("record_key", "null") or "null")
        if not recorded or recorded.get("column") != key_column:
            raise ServingError(f"the log keys its records by {recorded['column']!r}, not {key_column!r}" if recorded
                               else "the log was written without serving.log.key_column, so labels must name "
                               "request_id and row")
        if recorded.get("hashed"):
            key_env = "MODELMILL_PII_KEY"
            key = os.environ.get(key_env, "").encode() or None
            if key is None:
                raise ServingError(f"the key column {key_column!r} is personal data, stored hashed: set "
                                   f"{key_env} to the key the log was written with")
    elif "request_id" not in frame.columns:
        raise DataError("labels need a request_id column (and row), or --key COLUMN", source=source)
    treat = key_treatment(identity.privacy, key_column) if key_column is not None else None
    labels, problems = [], []
    for index, record in enumerate(frame.to_dict("records")):
        raw = record[value_column]
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            continue  # no label on this line
        try:
            value = check_label(target, raw.item() if hasattr(raw, "item") else raw)
        except ValueError as exc:
            problems.append(index)
            if len(problems) == 1:
                first = str(exc)
            continue
        if key_column is not None and treat is not None:
            given = treat(record[key_column])  # the key as the log stores it: treated by the policy
            labels.append(Label(value, key=str(hash_personal(key, given) if key else given)[:256]))
        else:
            row = record.get("row", 0)
            labels.append(Label(value, str(record["request_id"]), int(0 if row is None or row != row else row)))
    if problems:
        raise DataError(f"{first} (and {len(problems) - 1} more); nothing was stored", source=source,
                        column=value_column, rows=problems)
    return labels


def key_treatment(privacy: dict[str, Any] | None, column: str) -> Callable[[Any], Any]:
    """How the log's records were keyed by ``column``: its privacy treatment (the policy the
    store keeps with the model's identity; a hash needs the key from the environment, and
    must be the key the model was trained with).

    Raises:
        ServingError: the column is hashed and the key is unset, too short or another one.
    """
    from modelmill.privacy.keys import key_fingerprint, key_problem, read_key
    from modelmill.privacy.treatments import treatment_of

    entry = (privacy or {}).get("columns", {}).get(column)
    if not isinstance(entry, dict):
        return lambda value: value
    key = None
    if entry.get("action") == "hash":
        env = str((privacy or {}).get("key_env") or "MODELMILL_PII_KEY")
        problem = key_problem(env)
        key = read_key(env)
        stored = (privacy or {}).get("key_fingerprint")
        if problem or key is None or key_fingerprint(key) != stored:
            why = f"{env} {problem}" if problem else f"{env} holds another key than the model's (fingerprint {stored})"
            raise ServingError(f"the key column {column!r} is hashed by the model's privacy policy, and {why}. Fix: "
                               f"set {env} to the key the model was trained with")
    treat = treatment_of(entry, key)

    def treated(value: Any) -> Any:
        try:
            return treat(value)
        except Exception:  # an unreadable key (a date that is none) matches no record: the value is not shown
            return None
    return treated


def add_labels(url: str, path: Path, *, value_column: str | None = None,
               key_column: str | None = None) -> list[dict[str, Any]]:
    from modelmill.config.schema import DataConfig
    from modelmill.data.sources import read_table

    frame = read_table(DataConfig(source=str(path)))
    store = open_log(url)
    try:
        labels = labels_from_table(frame, store, value_column=value_column, key_column=key_column,
                                   source=str(path))
        if not labels:
            raise ModelmillError(f"{path} holds no labels")
        return store_labels(store, labels, sample=1.0)
    finally:
        store.close()
