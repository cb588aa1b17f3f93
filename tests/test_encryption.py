"""Seals, sealed logs and keys (modelmill.encryption): round trips, and the error each
fault gives: another key, a changed byte, a renamed or swapped file, a malformed key."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest

import modelmill.encryption.seals as seals
from modelmill.encryption import (KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT, MAX_RECORD, SealedLog, SealedLogHandler,
                                  as_key, find_name, generate_key, is_sealed, key_fingerprint, key_from_environment,
                                  parse_key, read_log, seal, unseal, write_key_file)
from modelmill.encryption.logs import _length_check
from modelmill.errors import EncryptionError, ModelmillError

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_seal_round_trip_and_fresh_nonces() -> None:
    data = b"secret rows, label=good"
    first, second = seal(data, KEY, "weights.safetensors"), seal(data, KEY, "weights.safetensors")
    assert first != second and is_sealed(first) and not is_sealed(data)
    assert b"secret" not in first
    assert unseal(first, KEY, "weights.safetensors", "b/weights.safetensors") == data
    assert unseal(seal(b"", KEY, "empty"), KEY, "empty", "x") == b""


def test_the_fingerprint_tells_keys_apart_and_reveals_nothing() -> None:
    assert key_fingerprint(KEY) != key_fingerprint(OTHER) and len(key_fingerprint(KEY)) == 8
    assert key_fingerprint(KEY) not in KEY


def test_another_key_names_the_file_and_both_fingerprints() -> None:
    sealed = seal(b"x" * 100, KEY, "config.yaml")
    with pytest.raises(EncryptionError) as caught:
        unseal(sealed, OTHER, "config.yaml", "bundle/config.yaml")
    message = str(caught.value)
    assert "bundle/config.yaml failed authentication: it was encrypted with another key" in message
    assert key_fingerprint(KEY).hex() in message and key_fingerprint(OTHER).hex() in message
    assert f"Fix: give the key whose fingerprint is {key_fingerprint(KEY).hex()}" in message
    assert isinstance(caught.value, ModelmillError)


@pytest.mark.parametrize("offset", [30, 40, -1])  # the nonce, the ciphertext, the tag
def test_one_flipped_byte_fails_authentication(offset: int) -> None:
    sealed = bytearray(seal(b"y" * 100, KEY, "metrics.json"))
    sealed[offset] ^= 0x01
    with pytest.raises(EncryptionError, match="b/metrics.json failed authentication: it was changed or damaged"):
        unseal(bytes(sealed), KEY, "metrics.json", "b/metrics.json")


# the header (magic 0-7, fingerprint 8-15, name tag 16-23) is authenticated too: a flipped
# byte there fails, and the message allows for damage rather than asserting another key/file
@pytest.mark.parametrize("offset,message", [
    (0, "b/m.json is not an encrypted file, or its first bytes are damaged"),
    (7, "b/m.json is not an encrypted file, or its first bytes are damaged"),
    (8, "b/m.json failed authentication: it was encrypted with another key .* or its first bytes are damaged"),
    (15, "b/m.json failed authentication: it was encrypted with another key .* or its first bytes are damaged"),
    (16, "b/m.json failed authentication: it holds the encrypted contents of another file, not of 'm.json' .* or "
         "its first bytes are damaged"),
    (23, "holds the encrypted contents of another file"),
    (24, "b/m.json failed authentication: it was changed or damaged"),
])
def test_a_flipped_header_byte_fails_and_says_what_is_likely(offset: int, message: str) -> None:
    sealed = bytearray(seal(b"y" * 100, KEY, "m.json"))
    sealed[offset] ^= 0x01
    with pytest.raises(EncryptionError, match=message):
        unseal(bytes(sealed), KEY, "m.json", "b/m.json")


def test_sizes_over_what_aes_gcm_takes_are_refused_naming_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seals, "MAX_PLAINTEXT", 64)  # 2 GiB in the real world
    with pytest.raises(EncryptionError, match=r"run/weights.safetensors is too large to encrypt: 65 bytes, over the "
                                              r"64 bytes \(2 GiB\) that one AES-GCM seal holds"):
        seal(b"w" * 65, KEY, "weights.safetensors", "run/weights.safetensors")
    sealed = seal(b"w" * 64, KEY, "weights.safetensors")
    assert unseal(sealed, KEY, "weights.safetensors", "w") == b"w" * 64
    with pytest.raises(EncryptionError, match=r"big is too large for an encrypted file: 117 bytes"):
        unseal(sealed + b"x", KEY, "weights.safetensors", "big")


def test_a_renamed_file_is_named_as_such() -> None:
    sealed = seal(b"z" * 10, KEY, "plots/roc.png")
    with pytest.raises(EncryptionError, match="holds the encrypted contents of another file, not of 'plots/pr.png'"):
        unseal(sealed, KEY, "plots/pr.png", "run/plots/pr.png")


def test_plaintext_and_truncated_files_are_refused() -> None:
    with pytest.raises(EncryptionError, match="x.json is not an encrypted file, or its first bytes are damaged"):
        unseal(b'{"a": 1}', KEY, "x.json", "x.json")
    with pytest.raises(EncryptionError, match="too short"):
        unseal(seal(b"abc", KEY, "x")[:30], KEY, "x", "x")


def test_the_name_is_found_from_the_path(tmp_path: Path) -> None:
    sealed = seal(b"png", KEY, "plots/roc.png")
    assert find_name(sealed, KEY, tmp_path / "run" / "plots" / "roc.png") == "plots/roc.png"
    assert find_name(sealed, KEY, tmp_path / "elsewhere.png") is None


# --------------------------------------------------------------------- logs


def test_sealed_log_round_trip_and_append_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    log = SealedLog(path, KEY, "train.log")
    log.append(b"epoch 1\n")
    log.append(b"epoch 2\n")
    log.close()
    assert path.read_bytes().startswith(b"MMSEAL") and b"epoch" not in path.read_bytes()
    again = SealedLog(path, KEY, "train.log")  # a resumed run appends, continuing the indices
    again.append(b"epoch 3\n")
    again.close()
    found = read_log(path.read_bytes(), KEY, "train.log", path)
    assert found.records == [b"epoch 1\n", b"epoch 2\n", b"epoch 3\n"] and not found.torn


def test_a_cut_off_last_record_is_reported_and_dropped_on_append(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    log = SealedLog(path, KEY, "train.log")
    log.append(b"one\n")
    log.append(b"two\n")
    log.close()
    path.write_bytes(path.read_bytes()[:-5])
    found = read_log(path.read_bytes(), KEY, "train.log", path)
    assert found.records == [b"one\n"] and found.torn
    SealedLog(path, KEY, "train.log").append(b"three\n")
    assert read_log(path.read_bytes(), KEY, "train.log", path).records == [b"one\n", b"three\n"]


def _log(path: Path, records: list[bytes], key: bytes = KEY) -> bytes:
    log = SealedLog(path, key, "train.log")
    for record in records:
        log.append(record)
    log.close()
    return path.read_bytes()


def test_a_flipped_byte_in_a_record_names_the_file_and_the_record(tmp_path: Path) -> None:
    data = bytearray(_log(tmp_path / "train.log", [b"a" * 20, b"b" * 20, b"c" * 20]))
    data[-10] ^= 0x01
    with pytest.raises(EncryptionError, match=r"train.log: record 2 failed authentication"):
        read_log(bytes(data), KEY, "train.log", tmp_path / "train.log")


def test_reordered_or_spliced_records_fail(tmp_path: Path) -> None:
    data = _log(tmp_path / "a.log", [b"first record", b"second record"])
    header, size = 40, 8 + 12 + len(b"first record") + 16
    first, second = data[header:header + size], data[header + size:]
    with pytest.raises(EncryptionError, match="record 0.* reordered or spliced"):
        read_log(data[:header] + second + first, KEY, "train.log", "a.log")
    other = _log(tmp_path / "b.log", [b"first record", b"second record"])  # same key, same name, another log
    with pytest.raises(EncryptionError, match="record 1.* reordered or spliced"):
        read_log(data[:header + size] + other[header + size:], KEY, "train.log", "a.log")
    with pytest.raises(EncryptionError, match="another key"):
        read_log(data, OTHER, "train.log", "a.log")


def _length_field(data: bytes, record: int) -> int:
    """Where record ``record``'s length field starts (8 bytes: length, check)."""
    offset = 40
    for _ in range(record):
        offset += 8 + int.from_bytes(data[offset:offset + 4], "big")
    return offset


@pytest.mark.parametrize("byte", range(8))
def test_a_flipped_length_byte_is_damage_at_its_record_not_a_torn_end(tmp_path: Path, byte: int) -> None:
    path = tmp_path / "train.log"
    data = bytearray(_log(path, [b"a" * 20, b"b" * 20, b"c" * 20]))
    for record in (0, 2):  # the first record, and the last (whose end a crash could have cut off)
        damaged = bytearray(data)
        damaged[_length_field(bytes(data), record) + byte] ^= 0x10
        with pytest.raises(EncryptionError, match=rf"train.log is damaged at record {record}: its length field"):
            read_log(bytes(damaged), KEY, "train.log", path)
        path.write_bytes(bytes(damaged))
        with pytest.raises(EncryptionError, match=rf"damaged at record {record}.*nothing can be appended to it. "
                                                  rf"Fix: move {path} aside"):
            SealedLog(path, KEY, "train.log")
        assert path.read_bytes() == bytes(damaged)  # nothing truncated


def test_an_impossible_length_is_damage(tmp_path: Path) -> None:
    """A length whose check holds (a forged one) but that no record can have."""
    data = bytearray(_log(tmp_path / "train.log", [b"a" * 20]))
    size = 12 + MAX_RECORD + 16 + 1
    header = bytes(data[:40])
    data[40:48] = size.to_bytes(4, "big") + _length_check(KEY, header, 0, size)
    with pytest.raises(EncryptionError, match=r"damaged at record 0: its length field reads 1,048,605 bytes, not "
                                              r"a length a record can have"):
        read_log(bytes(data), KEY, "train.log", "train.log")


def test_reopening_drops_only_the_one_cut_off_record(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    whole = _log(path, [b"one\n", b"two\n", b"three\n"])
    for cut in (1, 5, 9, 30):  # inside the length field, just after it, inside the body
        path.write_bytes(whole[:-cut])
        found = read_log(path.read_bytes(), KEY, "train.log", path)
        assert found.records == [b"one\n", b"two\n"] and found.torn
        SealedLog(path, KEY, "train.log").close()
        assert path.read_bytes() == whole[:found.end]


def test_a_failed_append_is_cut_back_to_the_last_whole_record(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train.log"
    log = SealedLog(path, KEY, "train.log")
    log.append(b"kept\n")
    good = path.read_bytes()
    real_write = os.write

    def half_then_full(handle: int, data: bytes) -> int:  # writes part of the record, then the disk is full
        if len(data) > 20:
            real_write(handle, bytes(data[:20]))
            raise OSError(28, "No space left on device")
        return real_write(handle, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        log.append(b"lost line\n")
    monkeypatch.undo()
    assert path.read_bytes() == good
    log.append(b"next\n")
    log.close()
    assert read_log(path.read_bytes(), KEY, "train.log", path).records == [b"kept\n", b"next\n"]


def test_the_log_handler_writes_sealed_lines(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    handler = SealedLogHandler(path, KEY, "train.log")
    logger = logging.getLogger("modelmill.test-sealed")
    logger.addHandler(handler)
    logger.warning("column 'colour' has 3 values")
    logger.removeHandler(handler)
    handler.close()
    assert b"colour" not in path.read_bytes()
    assert read_log(path.read_bytes(), KEY, "train.log", path).records == [b"column 'colour' has 3 values\n"]


def test_a_long_line_spans_records(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    handler = SealedLogHandler(path, KEY, "train.log")
    handler.emit(logging.makeLogRecord({"msg": "x" * (MAX_RECORD + 10)}))
    handler.close()
    records = read_log(path.read_bytes(), KEY, "train.log", path).records
    assert len(records) == 2 and b"".join(records) == b"x" * (MAX_RECORD + 10) + b"\n"


def test_a_failed_log_write_prints_one_line_without_the_record(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "train.log"
    handler = SealedLogHandler(path, KEY, "train.log")
    os.close(handler.log.handle)  # the file is gone from under the handler
    handler.emit(logging.makeLogRecord({"msg": "patient 4711 has diabetes"}))
    handler.log.handle = -1
    handler.close()
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"could not be written to the encrypted log {path}: OSError" in error
    assert "4711" not in error and "diabetes" not in error


# --------------------------------------------------------------------- keys


def test_key_text_forms() -> None:
    assert parse_key(KEY.hex(), source="s") == KEY
    assert parse_key(KEY.hex().upper() + "\n", source="s") == KEY
    assert parse_key(base64.b64encode(KEY).decode(), source="s") == KEY
    assert parse_key(base64.urlsafe_b64encode(OTHER).decode().rstrip("="), source="s") == OTHER
    assert as_key(KEY) == KEY and as_key(KEY.hex()) == KEY and len(generate_key()) == 32


def test_a_key_file_is_a_path_and_a_str_is_key_text(tmp_path: Path) -> None:
    file = tmp_path / "run.key"
    write_key_file(file, KEY)
    class Place:  # any os.PathLike names a key file, not only pathlib.Path
        def __fspath__(self) -> str:
            return str(file)

    assert as_key(file) == KEY and as_key(Place()) == KEY
    with pytest.raises(EncryptionError, match=r"the key given \(a str of \d+ characters\) is neither 64 hex characters "
                                              r"nor the base64 of 32 bytes. Fix: pass pathlib.Path\(...\) for a key "
                                              r"file"):
        as_key(str(file))


@pytest.mark.parametrize("text", ["", "abc", "00" * 31, "zz" * 32, base64.b64encode(b"x" * 16).decode()])
def test_a_malformed_key_is_refused_without_showing_it(text: str) -> None:
    with pytest.raises(EncryptionError) as caught:
        parse_key(text, source=KEY_ENVIRONMENT)
    message = str(caught.value)
    assert f"{KEY_ENVIRONMENT} is not an encryption key: expected 64 hex characters" in message
    assert "modelmill keygen" in message
    assert not text or text not in message


def test_keys_from_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "key"
    write_key_file(file, KEY)
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    assert key_from_environment({}) is None
    assert key_from_environment({KEY_ENVIRONMENT: KEY.hex()}) == KEY
    assert key_from_environment({KEY_FILE_ENVIRONMENT: str(file)}) == KEY
    assert key_from_environment({KEY_ENVIRONMENT: KEY.hex(), KEY_FILE_ENVIRONMENT: str(file)}) == KEY
    with pytest.raises(EncryptionError, match="hold different keys"):
        key_from_environment({KEY_ENVIRONMENT: OTHER.hex(), KEY_FILE_ENVIRONMENT: str(file)})
    with pytest.raises(EncryptionError, match=f"key file {tmp_path / 'none'} does not exist"):
        key_from_environment({KEY_FILE_ENVIRONMENT: str(tmp_path / "none")})
    with pytest.raises(EncryptionError, match="is never overwritten"):
        write_key_file(file, OTHER)
    assert read_key(file) == KEY


def read_key(path: Path) -> bytes:
    return parse_key(path.read_text(), source=str(path))


def test_a_key_file_that_cannot_be_written_is_named_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(EncryptionError, match=f"the key file {tmp_path / 'none' / 'k'} cannot be written "
                                              r"\(No such file or directory\). Fix: choose a path"):
        write_key_file(tmp_path / "none" / "k", KEY)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(EncryptionError, match=f"the key file {locked / 'k'} cannot be written"):
            write_key_file(locked / "k", KEY)
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o700)
