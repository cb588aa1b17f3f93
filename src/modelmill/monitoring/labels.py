"""Late labels: the truth about served records, joined to them by request id and row (or by
a record key column), from ``POST /v1/feedback`` or ``modelmill log labels FILE``.

Each label is answered on its own: ``stored`` (joined to its prediction), ``unknown`` (no
such prediction in the log, yet: a label by request id is kept and joins a record still on
its way from the spool; a label by key is not, as it names no record), or ``sampled_out``
(the record was not kept: the sampling hash says so, and the label is not stored).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelmill.monitoring.records import sampled_in
from modelmill.monitoring.store import LogStore


@dataclass(frozen=True)
class Label:
    value: Any
    request_id: str | None = None
    row: int | None = None
    key: str | None = None  # the record key as stored (hashed already where the column is personal)


def check_label(target: dict[str, Any], value: Any) -> Any:
    """The label as stored, or ValueError saying what the target expects. A class may be
    given as the text it has in the data or as a number or boolean that prints as it."""
    classes = [str(c) for c in target.get("classes") or []]
    if target.get("type") == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"the target {target.get('name')!r} is a number; got {_show(value)}")
        return float(value)
    text = str(value).lower() if isinstance(value, bool) else value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        text = str(int(value))
    if not isinstance(text, str) or text not in classes:
        shown = ", ".join(repr(c) for c in classes[:20]) + (" …" if len(classes) > 20 else "")
        raise ValueError(f"the target {target.get('name')!r} has the classes {shown}; got {_show(value)}")
    return text


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def store_labels(store: LogStore, labels: Sequence[Label], sample: float) -> list[dict[str, Any]]:
    """Write the labels; one result per label, in order."""
    results: list[dict[str, Any]] = [{} for _ in labels]
    by_id = [(i, label) for i, label in enumerate(labels) if label.request_id is not None]
    by_key = [(i, label) for i, label in enumerate(labels) if label.request_id is None]
    kept: list[tuple[int, Label]] = []
    for i, label in by_id:
        assert label.row is not None
        if sampled_in(str(label.request_id), label.row, sample):
            kept.append((i, label))
        else:
            results[i] = {"status": "sampled_out", "message": "this record was sampled out of the log "
                          "(serving.log.sample); its label is not stored"}
    found = store.find([(str(label.request_id), int(label.row or 0)) for _, label in kept])
    rows: list[dict[str, Any]] = []
    at = time.time()
    for i, label in kept:
        pair = (str(label.request_id), int(label.row or 0))
        rows.append({"request_id": pair[0], "row": pair[1], "value": json.dumps(label.value), "labelled_at": at})
        results[i] = {"status": "stored"} if pair in found else {
            "status": "unknown", "message": "no prediction with this request id and row in the log yet; "
            "the label is kept and joins the record if it arrives"}
    matches = store.find_keys([str(label.key) for _, label in by_key]) if by_key else {}
    for i, label in by_key:
        pairs = matches.get(str(label.key), [])
        rows += [{"request_id": r, "row": n, "value": json.dumps(label.value), "labelled_at": at} for r, n in pairs]
        results[i] = {"status": "stored", "records": len(pairs)} if pairs else {
            "status": "unknown", "message": "no logged record has this key; the label is not stored"}
    unique = {(row["request_id"], row["row"]): row for row in rows}  # the last label of a record wins
    store.write_labels(list(unique.values()))
    return results
