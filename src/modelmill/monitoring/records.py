"""What is stored of a served record: sampling, personal data, images, and the spool line.

A record's inputs are stored as received, except two kinds of column. A column whose
feature is marked ``pii: true`` is stored as a keyed HMAC-SHA256 (the key from the
environment, its fingerprint kept in the store so that a wrong key is a clear error) or
left out; never in clear. An image column (``Feature.modality == "image"``) is stored as
its SHA-256, as the bytes that were sent, or not at all (``serving.log.images``).

Columns under the privacy policy (``privacy:``) reach the log already treated: the service's
request contract (of the version that answered; a version with another policy is refused
by the log's model identity) hashes, masks, generalises or scrubs them on arrival and drops
the dropped ones, once; the encoder stores them as they are. The policy it is given treats
the keys that labels name (:meth:`RecordEncoder.lookup_key`), the one door it has. The key
helpers live in :mod:`modelmill.privacy.keys`, shared with the policy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from modelmill.config.serving import LogConfig
from modelmill.errors import ServingError
from modelmill.privacy.keys import hash_personal, key_fingerprint, pii_key
from modelmill.privacy.policy import PrivacyPolicy

__all__ = ["RecordEncoder", "StoredColumn", "hash_personal", "key_fingerprint", "parse_line", "pii_key",
           "sampled_in", "stored_outputs"]
_FIELDS = 9  # request id, row, logged at, model, version, latency, record key, inputs, outputs


def sampled_in(request_id: str, row: int, rate: float) -> bool:
    """Whether a record is kept: a hash of its key, so anyone can tell later (a label for a
    sampled-out record is answered as such) and the share is ``rate`` for any ids."""
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    digest = hashlib.blake2b(f"{request_id}/{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


def stored_outputs(prediction: dict[str, Any]) -> str:
    """A prediction as the log stores it (the ``outputs`` column, and a shadow's): the JSON
    of the answer's keys and values."""
    return to_json(prediction).decode()


def _decoded(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode()


@dataclass(frozen=True)
class StoredColumn:
    name: str
    kind: str  # "plain", "pii", "image"


class RecordEncoder:
    """Turns served requests into spool lines, on the writer's thread (never the request's)."""

    def __init__(self, features: Sequence[Any], settings: LogConfig, key: bytes | None,
                 policy: PrivacyPolicy | None = None) -> None:
        self.settings = settings
        self.key = key
        self.policy = policy if policy is not None and policy.active else None
        self.columns = [StoredColumn(f.name, "pii" if getattr(f.config, "pii", False) else
                                     "image" if f.modality == "image" else "plain") for f in features]
        self.special = [c for c in self.columns if c.kind != "plain"]
        names = [c.name for c in self.columns]
        if settings.key_column is not None and settings.key_column not in names:
            raise ServingError(f"serving.log.key_column: {settings.key_column!r} is not an input of the "
                               f"model; its inputs: {', '.join(names)}")
        self.key_kind = next((c.kind for c in self.columns if c.name == settings.key_column), "plain")

    def stored_value(self, kind: str, value: Any) -> Any:
        if value is None or kind == "plain":
            return value
        if kind == "pii":
            assert self.key is not None
            return hash_personal(self.key, value)
        # an image arrives decoded (the request contract's base64 bytes type) or as text
        data = value if isinstance(value, bytes) else _decoded(str(value))
        if self.settings.images == "bytes":
            return base64.b64encode(data).decode("ascii")
        if self.settings.images == "none":
            return None
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def record_key(self, record: dict[str, Any]) -> str | None:
        """The value of the key column as stored (hashed when the column is personal data)."""
        if self.settings.key_column is None:
            return None
        value = record.get(self.settings.key_column)
        if value is None:
            return None
        if self.key_kind == "pii" and self.key is None:
            return None  # pii: drop leaves the column out, its key too
        return str(self.stored_value(self.key_kind, value))[:256]

    def lookup_key(self, given: Any) -> str:
        """A key as a label names it, in the form the store holds it."""
        column = self.settings.key_column
        if self.policy is not None and column is not None and column in self.policy.treated:
            given = self.policy.value(column, given)
        return str(self.stored_value(self.key_kind, given))[:256]

    def lines(self, request_id: str, records: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]],
              model: str, version: str, at: float, latency_ms: float, kept: Sequence[int]) -> list[str]:
        """One spool line per kept record: the fields of a predictions row (``PREDICTION_COLUMNS``
        order), tab-separated. Tabs and newlines cannot occur inside a field: ids and model names
        are checked names, versions are cleaned here, the rest is JSON (which escapes them).
        Written in one go because it runs for every served record."""
        version = version.replace("\t", " ").replace("\n", " ")  # a folder name may hold anything
        middle = f"\t{at!r}\t{model}\t{version}\t{round(latency_ms, 3)!r}\t"
        lines = []
        for row in kept:
            record = records[row]  # treated on arrival by the request contract
            if self.special:
                record = dict(record)
                for column in self.special:
                    if column.kind == "pii" and self.key is None:
                        record.pop(column.name, None)
                    elif column.name in record:
                        record[column.name] = self.stored_value(column.kind, record[column.name])
            key = self.record_key(records[row]) if self.settings.key_column else None  # before the pii columns change
            lines.append(f"{request_id}\t{row}{middle}{'' if key is None else to_json(key).decode()}\t"
                         f"{to_json(record, bytes_mode='base64').decode()}\t{stored_outputs(outputs[row])}\n")
        return lines


def parse_line(line: str) -> tuple[Any, ...] | None:
    """A spool line as a row of the predictions table, in ``PREDICTION_COLUMNS`` order
    (None: a damaged line, skipped)."""
    fields = line.rstrip("\n").split("\t")
    if len(fields) != _FIELDS:
        return None
    try:
        return (fields[0], int(fields[1]), float(fields[2]), fields[3], fields[4], float(fields[5]),
                json.loads(fields[6]) if fields[6] else None, fields[7], fields[8])
    except ValueError:
        return None
