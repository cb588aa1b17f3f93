"""Sealed files and keys: AES-256-GCM seals for every file of an encrypted bundle or run.

A sealed file is ``MAGIC`` (8 bytes) · the key's fingerprint (8) · the name's tag (8) ·
a random nonce (12) · the AES-GCM ciphertext and its 16-byte tag. The associated data is
that whole header and the file's name inside its bundle or run (``weights.safetensors``,
``checkpoints/last.safetensors``), so a file moved to another name, or a changed header
byte, fails to open. The fingerprint (HMAC of a fixed message under the key) and the name's
tag (HMAC of the name) reveal nothing without the key; they are read only *after* a failed
authentication, to say what is likely: another key, another file, or changed bytes.

Keys are 32 bytes, written as 64 hex characters (or base64), from
``MODELMILL_ENCRYPTION_KEY`` or a file named by ``MODELMILL_ENCRYPTION_KEY_FILE``; they are
never stored beside what they seal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modelmill.errors import EncryptionError, EncryptionKeyError
from modelmill.files import atomic_create

MAGIC = b"MMSEAL1\n"
STREAM_MAGIC = b"MMSEAL1L"
PREFIX = b"MMSEAL"  # what every sealed file, and every sealed log, starts with
KEY_ENVIRONMENT = "MODELMILL_ENCRYPTION_KEY"
KEY_FILE_ENVIRONMENT = "MODELMILL_ENCRYPTION_KEY_FILE"
KEY_BYTES = 32
_FINGERPRINT_MESSAGE = b"modelmill key fingerprint v1"
_TAG, _NONCE, _GCM_TAG = 8, 12, 16
_HEADER = len(MAGIC) + 2 * _TAG + _NONCE
# AES-GCM (the cryptography package) takes at most 2**31 - 1 bytes at once; the ciphertext
# is 16 bytes longer than the plaintext, and must open again
MAX_PLAINTEXT = 2**31 - 1 - _GCM_TAG
_FIX_KEY = (f"Fix: set {KEY_ENVIRONMENT} (64 hex characters) or {KEY_FILE_ENVIRONMENT} (a file holding them), "
            "or pass --key-file; `modelmill keygen -o FILE` makes a key")
Key = bytes | str | os.PathLike[str]


# --------------------------------------------------------------------- keys


def generate_key() -> bytes:
    """A new random 32-byte key."""
    return secrets.token_bytes(KEY_BYTES)


def key_text(key: bytes) -> str:
    """The text form of a key (64 hex characters), as a key file holds it."""
    return check_key(key).hex()


def key_fingerprint(key: bytes) -> bytes:
    """8 bytes that tell keys apart and reveal nothing of them: HMAC-SHA256 of a fixed message."""
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).digest()[:_TAG]


def check_key(key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise EncryptionKeyError(f"an encryption key is {KEY_BYTES} bytes, not {len(key)}. {_FIX_KEY}")
    return key


def parse_key(text: str | bytes, *, source: str) -> bytes:
    """A key from its text: 64 hex characters, or the base64 (standard or URL-safe) of 32
    bytes. ``source`` names where the text came from; the text itself is never shown."""
    try:
        value = (text.decode("ascii") if isinstance(text, bytes) else text).strip()
    except UnicodeDecodeError:
        value = ""
    if len(value) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(value.encode("ascii") + b"=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise EncryptionKeyError(f"{source} is not an encryption key: expected 64 hex characters or the base64 of "
                             f"{KEY_BYTES} bytes, got {len(value)} characters. {_FIX_KEY}")


def read_key_file(path: str | Path) -> bytes:
    path = Path(path).expanduser()
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise EncryptionKeyError(f"key file {path} does not exist. {_FIX_KEY}") from None
    except OSError as exc:
        raise EncryptionKeyError(f"key file {path} cannot be read ({exc.strerror}). Fix: check the path and its "
                                 "permissions") from None
    return parse_key(text, source=f"key file {path}")


def key_from_environment(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key named by the environment, or None when neither variable is set.

    Raises:
        EncryptionError: a variable holds no key, the key file is missing, or both are set
            to different keys.
    """
    environ = os.environ if environ is None else environ
    text, file = environ.get(KEY_ENVIRONMENT, ""), environ.get(KEY_FILE_ENVIRONMENT, "")
    direct = parse_key(text, source=KEY_ENVIRONMENT) if text.strip() else None
    from_file = read_key_file(file) if file.strip() else None
    if direct is not None and from_file is not None and not hmac.compare_digest(direct, from_file):
        raise EncryptionKeyError(f"{KEY_ENVIRONMENT} and {KEY_FILE_ENVIRONMENT} ({file}) hold different keys "
                                 f"(fingerprints {key_fingerprint(direct).hex()} and "
                                 f"{key_fingerprint(from_file).hex()}). Fix: unset one of them")
    return direct if direct is not None else from_file


def require_key(what: str) -> bytes:
    """The environment's key, for ``what`` (``bundle X is encrypted``), or a clear error."""
    key = key_from_environment()
    if key is None:
        raise EncryptionKeyError(f"{what}; no key is given. {_FIX_KEY}")
    return key


def as_key(key: Key) -> bytes:
    """A key given to the Python API: 32 raw bytes, its text (hex or base64), or a key file's
    path as an ``os.PathLike`` (``pathlib.Path``); a ``str`` is always the key's text."""
    if isinstance(key, os.PathLike):
        return read_key_file(Path(key))
    if isinstance(key, bytes) and len(key) == KEY_BYTES:
        return key
    try:
        return parse_key(key, source="the key given")
    except EncryptionError:
        if not isinstance(key, str):
            raise
        raise EncryptionKeyError(f"the key given (a str of {len(key.strip())} characters) is neither 64 hex "
                                 f"characters nor the base64 of {KEY_BYTES} bytes. Fix: pass pathlib.Path(...) for a "
                                 "key file, or the key's text or its 32 bytes") from None


def write_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` as text into a new file readable by its owner alone (0600), atomically
    (no partial file is ever left), and never over a file.

    Raises:
        EncryptionError: ``path`` exists, or cannot be written (no such folder, no permission).
    """
    try:
        atomic_create(path, (key_text(key) + "\n").encode("ascii"), mode=0o600)
    except FileExistsError:
        raise EncryptionError(f"{path} exists already; a key file is never overwritten (the data sealed with "
                              "the old key would be lost). Fix: choose another path") from None
    except OSError as exc:
        raise EncryptionError(f"the key file {path} cannot be written ({exc.strerror or exc}). Fix: choose a path "
                              "in an existing folder you can write to") from None


# ------------------------------------------------------------------- files


def name_tag(key: bytes, name: str) -> bytes:
    return hmac.new(key, b"name\x00" + name.encode("utf-8"), hashlib.sha256).digest()[:_TAG]


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` is a sealed file or a sealed log."""
    return data[: len(PREFIX)] == PREFIX


def seal(data: bytes, key: bytes, name: str, where: str | Path | None = None) -> bytes:
    """``data`` encrypted and authenticated as the file ``name`` of its bundle or run;
    ``where`` (its path, default ``name``) names it in errors.

    Raises:
        EncryptionError: ``data`` is larger than one AES-GCM seal can hold (2 GiB).
    """
    if len(data) > MAX_PLAINTEXT:
        raise EncryptionError(f"{where or name} is too large to encrypt: {len(data):,} bytes, over the "
                              f"{MAX_PLAINTEXT:,} bytes (2 GiB) that one AES-GCM seal holds. Fix: make the model "
                              "smaller (modelmill compress), or keep it in clear on an encrypted disk")
    header = MAGIC + key_fingerprint(check_key(key)) + name_tag(key, name) + secrets.token_bytes(_NONCE)
    return header + AESGCM(key).encrypt(header[-_NONCE:], data, header + name.encode("utf-8"))


def seal_if(data: bytes, key: bytes | None, name: str) -> bytes:
    """``data`` sealed as ``name`` when there is a key (an encrypted run or bundle), else as it is."""
    return seal(data, key, name) if key is not None else data


def unseal(data: bytes, key: bytes, name: str, where: str | Path) -> bytes:
    """The plaintext of a sealed file; ``where`` (its path) names it in errors. Called where
    a sealed file is expected (a sealed bundle's member, an encrypted run's checkpoint).

    Raises:
        EncryptionError: not sealed (or its first bytes damaged), too large, or it fails
            authentication: another key, another file (renamed or swapped), or changed bytes.
    """
    if data[: len(MAGIC)] != MAGIC:
        if data[: len(STREAM_MAGIC)] == STREAM_MAGIC:
            raise EncryptionError(f"{where} is a sealed log, not a sealed file, where an encrypted file is expected")
        raise EncryptionError(f"{where} is not an encrypted file, or its first bytes are damaged, where an "
                              "encrypted file is expected")
    if len(data) < _HEADER + _GCM_TAG:
        raise EncryptionError(f"{where} is damaged: too short for an encrypted file ({len(data)} bytes)")
    if len(data) - _HEADER > MAX_PLAINTEXT + _GCM_TAG:
        raise EncryptionError(f"{where} is too large for an encrypted file: {len(data):,} bytes, over the "
                              f"{MAX_PLAINTEXT:,} bytes (2 GiB) that one AES-GCM seal holds; modelmill wrote no such "
                              "file (it was changed or damaged)")
    header = data[:_HEADER]
    try:
        return AESGCM(check_key(key)).decrypt(header[-_NONCE:], data[_HEADER:], header + name.encode("utf-8"))
    except InvalidTag:
        raise _failed(header, key, name, where, f"{where} failed authentication: it was changed or damaged after "
                      "it was written (it cannot be trusted)") from None


def _failed(header: bytes, key: bytes, name: str, where: str | Path, otherwise: str) -> EncryptionError:
    """What a failed authentication likely means: :func:`_header_problem`, else ``otherwise``."""
    return _header_problem(header, key, name, where) or EncryptionError(otherwise)


def _header_problem(header: bytes, key: bytes, name: str, where: str | Path) -> EncryptionError | None:
    """Another key or another file, from the header's fingerprint and name tag. They are read
    only once authentication failed (they are authenticated with the rest, so a damaged one
    fails too), and the error allows that they may be damaged themselves."""
    start = len(MAGIC)  # as long as STREAM_MAGIC
    found, tag = header[start:start + _TAG], header[start + _TAG:start + 2 * _TAG]
    mine = key_fingerprint(key)
    if not hmac.compare_digest(found, mine):
        return EncryptionKeyError(f"{where} failed authentication: it was encrypted with another key (the file names "
                                  f"key fingerprint {found.hex()}; the key given has {mine.hex()}), or its first bytes "
                                  f"are damaged. Fix: give the key whose fingerprint is {found.hex()} (`modelmill "
                                  "keygen` printed it); if none of your keys has it, the file is damaged")
    if not hmac.compare_digest(tag, name_tag(key, name)):
        return EncryptionError(f"{where} failed authentication: it holds the encrypted contents of another file, not "
                               f"of {name!r} (it was renamed, or swapped with another file), or its first bytes are "
                               "damaged")
    return None


def find_name(data: bytes, key: bytes, path: Path) -> str | None:
    """The name a sealed file (or log) at ``path`` was sealed as: the shortest tail of its
    path whose tag matches (``roc.png``, ``plots/roc.png`` …); None when none does."""
    tag = data[len(MAGIC) + _TAG:len(MAGIC) + 2 * _TAG]
    parts = path.resolve().parts
    for start in range(len(parts) - 1, 0, -1):
        name = "/".join(parts[start:])
        if hmac.compare_digest(tag, name_tag(key, name)):
            return name
    return None
