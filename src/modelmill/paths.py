"""One check for every name that comes from a user or a request and becomes a path
(bundle versions, model names): it must name a direct child of its root, whatever the
encoding tricks. Past path-traversal fixes elsewhere were bypassed by ``..\\``, ``%2e``,
``%252e`` (double encoding), ``#`` and ``;`` — so names are decoded until stable, then
held to a short whitelist, then resolved and checked to stay under the root."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from modelmill.errors import ModelmillError

# Letters, digits, dot, dash, underscore; not starting with a dot (no "..", no hidden files).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class UnsafePathError(ModelmillError):
    """A name that would leave its root, or that is not a plain file or folder name."""


def decoded(name: str) -> str:
    """Percent-decoding applied until the name stops changing (``%252e`` → ``%2e`` → ``.``)."""
    for _ in range(8):
        once = unquote(name)
        if once == name:
            return name
        name = once
    raise UnsafePathError("the name is percent-encoded too many times")


def safe_child(root: Path, name: str) -> Path:
    """``root / name`` when ``name`` is one plain component that stays under ``root``.

    Raises:
        UnsafePathError: with a message that names neither the root nor the resolved path,
            so it is safe to show to a remote caller.
    """
    plain = decoded(name)
    if not _SAFE_NAME.fullmatch(plain):
        raise UnsafePathError(
            f"invalid name {name[:64]!r}: use 1-128 letters, digits, '.', '-' or '_', not starting with '.'"
        )
    base = root.resolve()
    candidate = (base / plain).resolve()
    if candidate.parent != base:  # a symlink pointing elsewhere, for one
        raise UnsafePathError(f"invalid name {name[:64]!r}: it leads outside its folder")
    return candidate
