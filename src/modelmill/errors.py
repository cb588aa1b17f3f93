"""The error hierarchy.

Every error a user can cause is a :class:`ModelmillError`: the CLI prints its message and
exits 2, without a traceback. Anything else is a fault of ours (exit 1). Messages say
what was wrong, where, and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ModelmillError(Exception):
    """Base of every error caused by the user's input (config, data, bundle, request)."""


class ConfigError(ModelmillError):
    """A config value is wrong; ``path`` is the dotted config path (``training.optimizer.lr``)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class DataError(ModelmillError):
    """The data is wrong: names the source, and where known the column and rows."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        column: str | None = None,
        rows: Iterable[int] | None = None,
    ) -> None:
        self.detail = message  # the message without where (for an error re-raised with another source)
        self.source = source
        self.column = column
        self.rows = list(rows) if rows is not None else []
        where = []
        if source:
            where.append(f"in {source}")
        if column:
            where.append(f"column {column!r}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" and {len(self.rows) - 10} more" if len(self.rows) > 10 else ""
            where.append(f"rows {shown}{more}")
        prefix = " ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ModelError(ModelmillError):
    """A model cannot be built, trained or loaded from what the user gave."""


class BundleError(ModelmillError):
    """A bundle is missing, incomplete, tampered with, or not a bundle at all."""


class EncryptionError(ModelmillError):
    """An encrypted file cannot be opened (no key, another key, changed or damaged bytes), or a
    key is malformed; names the file or the variable, never the key."""


class EncryptionKeyError(EncryptionError):
    """The key, not the file, is the problem: none is given, it cannot be read or parsed, or
    the file was sealed with another key (the fingerprints tell). A changed or damaged file
    is a plain :class:`EncryptionError`."""


class MissingKeyError(ConfigError):
    """The privacy policy's ``hash`` is configured and the key's variable is unset or too short."""


class WrongKeyError(BundleError):
    """The bundle's hashed columns were made with another key than the environment's."""


KEY_ERRORS = (MissingKeyError, WrongKeyError, EncryptionKeyError)
"""The process's key is wrong for every model it opens: where a model is served, fatal (the
server does not start; a reload answers 409 ``key_mismatch``), never "a broken version"."""


class ServingError(ModelmillError):
    """A serving request or setting is wrong."""


class TrackingError(ModelmillError):
    """The tracking server or model registry cannot give what was asked: an unknown registered
    model, version or alias, a server that does not answer, a fetched bundle that fails its
    checks. Its message never holds credentials."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    """One message for every "unknown name" error: the value, the valid ones, a close match."""
    known = sorted(choices)
    return f"unknown {kind} {value!r}{did_you_mean(value, known)}; valid: {', '.join(known)}"
