"""Sealed logs: an encrypted run's log, written as it goes.

A sealed log (``STREAM_MAGIC`` · fingerprint · name tag · a random 16-byte stream id,
then records ``u32 length · 4-byte length check · nonce · ciphertext+tag``) seals each
record on its own, with the log's header, its name and the record's index as associated
data: records cannot be reordered, dropped from the middle, or swapped in from another log
unnoticed. The length check (an HMAC of the header, the index and the length) tells a
damaged length field from a record cut off by a crash, so reopening a log drops at most
that one cut-off record and refuses any other damage.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import struct
import sys
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modelmill.encryption.seals import (_GCM_TAG, _NONCE, _TAG, STREAM_MAGIC, _failed, _header_problem, check_key,
                                        key_fingerprint, name_tag)
from modelmill.errors import EncryptionError

_STREAM_ID = 16
_STREAM_HEADER = len(STREAM_MAGIC) + 2 * _TAG + _STREAM_ID
_LENGTH = struct.Struct(">I4s")  # a record's length and its check
MAX_RECORD = 1 << 20  # a log record's plaintext: log lines are small, longer ones are cut into records


def _record_data(header: bytes, name: str, index: int) -> bytes:
    return header + name.encode("utf-8") + b"\x00" + struct.pack(">Q", index)


def _length_check(key: bytes, header: bytes, index: int, size: int) -> bytes:
    return hmac.new(key, b"length\x00" + header + struct.pack(">QI", index, size), hashlib.sha256).digest()[:4]


def _write_all(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


class SealedLog:
    """An append-only sealed log file: each record sealed on its own as it is written. An
    existing log (a resumed run's) is verified and appended to: a record cut off by a crash
    at its end is dropped (at most that one), any other damage refuses to append."""

    def __init__(self, path: Path, key: bytes, name: str) -> None:
        self.path, self.key, self.name = path, check_key(key), name
        self.aead = AESGCM(key)
        if path.exists() and path.stat().st_size:
            try:
                found = read_log(path.read_bytes(), key, name, path)
            except EncryptionError as exc:
                raise type(exc)(f"{exc}; nothing can be appended to it. Fix: move {path} aside (or restore "
                                      "it) and run again: a new log is started") from None
            self.header, self.index, self.offset = found.header, len(found.records), found.end
            self.handle = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.ftruncate(self.handle, found.end)  # the one record cut off by a crash, if any
        else:
            self.header = STREAM_MAGIC + key_fingerprint(key) + name_tag(key, name) + secrets.token_bytes(_STREAM_ID)
            self.handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o666)
            self.index, self.offset = 0, 0
            self._write(self.header)

    def append(self, record: bytes) -> None:
        """Seal and write one record (at most ``MAX_RECORD`` bytes) in one write; a failed
        write is cut back off, so the log ends in its last whole record."""
        if len(record) > MAX_RECORD:
            raise EncryptionError(f"a record of {len(record):,} bytes is over the {MAX_RECORD:,} bytes a record of "
                                  f"the encrypted log {self.path} holds")
        nonce = secrets.token_bytes(_NONCE)
        body = nonce + self.aead.encrypt(nonce, record, _record_data(self.header, self.name, self.index))
        self._write(_LENGTH.pack(len(body), _length_check(self.key, self.header, self.index, len(body))) + body)
        self.index += 1

    def _write(self, data: bytes) -> None:
        try:
            _write_all(self.handle, data)
        except OSError:
            with suppress(OSError):  # back to the last whole record; the error says what failed
                os.ftruncate(self.handle, self.offset)
            raise
        self.offset += len(data)

    def close(self) -> None:
        if self.handle >= 0:  # logging may close a handler twice (at exit too)
            os.close(self.handle)
            self.handle = -1


@dataclass
class LogRecords:
    """What a sealed log holds: its records, its header, where its last whole record ends,
    and whether a cut-off record follows (a crash in the middle of a write)."""

    records: list[bytes]
    header: bytes
    end: int
    torn: bool

    @property
    def stream_id(self) -> bytes:
        return self.header[-_STREAM_ID:]


def read_log(data: bytes, key: bytes, name: str, where: str | Path) -> LogRecords:
    """Open every record of a sealed log, in order.

    Raises:
        EncryptionError: not a sealed log, another key or name, or a record (or its length)
            changed, moved or removed (naming its index).
    """
    if data[: len(STREAM_MAGIC)] != STREAM_MAGIC:
        raise EncryptionError(f"{where} is not an encrypted log, or its first bytes are damaged")
    if len(data) < _STREAM_HEADER:
        raise EncryptionError(f"{where} is damaged: too short for an encrypted log ({len(data)} bytes)")
    header, aead = data[:_STREAM_HEADER], AESGCM(check_key(key))
    records: list[bytes] = []
    offset = _STREAM_HEADER
    for body, end in _bodies(data, key, name, where):
        index = len(records)
        try:
            records.append(aead.decrypt(body[:_NONCE], body[_NONCE:], _record_data(header, name, index)))
        except InvalidTag:
            raise _failed(header, key, name, where, f"{where}: record {index} failed authentication: the log was "
                          "changed, damaged, reordered or spliced after it was written") from None
        offset = end
    problem = _header_problem(header, key, name, where) if not records else None
    if problem is not None:  # no record authenticated the header: say what it tells, at least
        raise problem
    return LogRecords(records, header, offset, torn=offset < len(data))


def _bodies(data: bytes, key: bytes, name: str, where: str | Path) -> Iterator[tuple[bytes, int]]:
    """Each whole record's body and where it ends; a record cut off at the end is left out."""
    header, offset, index = data[:_STREAM_HEADER], _STREAM_HEADER, 0
    while offset + _LENGTH.size <= len(data):  # fewer bytes left: a length cut off by a crash
        size, check = _LENGTH.unpack_from(data, offset)
        if not hmac.compare_digest(check, _length_check(key, header, index, size)):
            field = "its length field" + (" (or the log's header)" if index == 0 else "")
            raise _failed(header, key, name, where, f"{where} is damaged at record {index}: {field} fails its check "
                          f"(it reads {size:,} bytes): the log was changed, damaged, reordered or spliced after it "
                          "was written")
        if not _NONCE + _GCM_TAG <= size <= _NONCE + MAX_RECORD + _GCM_TAG:
            raise EncryptionError(f"{where} is damaged at record {index}: its length field reads {size:,} bytes, "
                                  f"not a length a record can have (at most {MAX_RECORD:,} bytes)")
        end = offset + _LENGTH.size + size
        if end > len(data):  # the one record cut off by a crash in the middle of its write
            return
        yield data[offset + _LENGTH.size:end], end
        offset, index = end, index + 1


class SealedLogHandler(logging.Handler):
    """A logging handler writing each formatted line as records of a :class:`SealedLog`
    (a line over ``MAX_RECORD`` bytes spans several; a reader joins them)."""

    def __init__(self, path: Path, key: bytes, name: str) -> None:
        super().__init__()
        self.log = SealedLog(path, key, name)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8")
            for start in range(0, len(line), MAX_RECORD):
                self.log.append(line[start:start + MAX_RECORD])
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        """One line naming the log and the error; never the record (logging's own handler
        would print the message in clear, which the encrypted log exists to prevent)."""
        error = sys.exc_info()[1]
        if logging.raiseExceptions and sys.stderr:
            with suppress(Exception):
                sys.stderr.write(f"modelmill: a line could not be written to the encrypted log {self.log.path}: "
                                 f"{type(error).__name__}: {error}\n")

    def close(self) -> None:
        self.log.close()
        super().close()
