"""The secret key of personal data: read from the environment, never stored; known by its
fingerprint (an HMAC of a fixed message), which bundles and the prediction store keep so
that a different key is a clear error instead of values that silently never match.

One key serves the privacy policy's ``hash`` action (``privacy.key_env``) and the
prediction log's ``pii: true`` columns (``serving.log.pii_key_env``); both default to
``MODELMILL_PII_KEY``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from modelmill.config.serving import LogConfig
from modelmill.errors import ServingError

MIN_KEY_BYTES = 16
_FINGERPRINT_MESSAGE = b"modelmill prediction log: pii key fingerprint"  # fixed: stores keep fingerprints of it
_POLICY_HASH = b"modelmill privacy policy: hash\x00"  # apart from the log's hashes of the same values
HASH_PREFIX = "hmac:"
HASH_HEX = 16


def key_problem(env: str) -> str | None:
    """Why the key in ``env`` cannot be used ("is not set", "is shorter than 16 bytes"), or None."""
    key = os.environ.get(env, "")
    if not key:
        return "is not set"
    if len(key.encode()) < MIN_KEY_BYTES:
        return f"is shorter than {MIN_KEY_BYTES} bytes"
    return None


def read_key(env: str) -> bytes | None:
    """The key in ``env`` as bytes; None when it is unset or too short (see :func:`key_problem`)."""
    return None if key_problem(env) else os.environ[env].encode()


def key_fingerprint(key: bytes) -> str:
    """16 hex characters that name a key without revealing it."""
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


def hash_token(key: bytes, text: str) -> str:
    """The privacy policy's hash of a value's text: ``hmac:`` and 16 hex characters."""
    return HASH_PREFIX + hmac.new(key, _POLICY_HASH + text.encode(), hashlib.sha256).hexdigest()[:HASH_HEX]


# ------------------------------------------------------------ the prediction log's key


def pii_key(settings: LogConfig, needed: bool) -> bytes | None:
    """The prediction log's HMAC key for ``pii: true`` columns, from the environment (None when
    not needed, or when those columns are left out of the log).

    Raises:
        ServingError: the key is needed and its variable is unset or too short.
    """
    if not needed or settings.pii != "hash":
        return None
    problem = key_problem(settings.pii_key_env)
    if problem:
        raise ServingError(
            f"the model has personal-data inputs (pii: true) and serving.log.pii is 'hash', but the "
            f"environment variable {settings.pii_key_env} {problem}. Fix: set it to a secret of 16 or "
            "more characters (keep it: the hashes of later records must match), or set "
            "serving.log.pii: drop to leave those columns out of the log")
    return os.environ[settings.pii_key_env].encode()


def hash_personal(key: bytes, value: Any) -> str:
    """A personal value as the prediction log stores it: the same value and key, the same text."""
    if isinstance(value, bytes):
        data = value
    else:
        data = (value if isinstance(value, str) else json.dumps(value, default=str)).encode()
    return "hmac-sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()
