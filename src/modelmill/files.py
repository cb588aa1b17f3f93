"""Atomic file writes, one helper for every stage: write a temporary sibling, fsync it,
rename it over the target. Readers never see half a file, and a failure (or a kill)
leaves the previous file untouched and no temporary file behind."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield temp
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: Path, mode: str = "w", **options: Any) -> Iterator[IO[Any]]:
    """``open`` for writing, atomically. The temporary file is created with ``"x"`` (not
    mkstemp), so it gets the usual umask-derived permissions."""
    with atomic_path(path) as temp, open(temp, mode.replace("w", "x"), **options) as stream:
        yield stream


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as stream:
        stream.write(data)


def atomic_create(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Write a *new* file atomically, never over an existing one: a temporary sibling made
    with ``mode`` (less the umask), synced, then hard-linked to ``path`` (a link fails on an
    existing name, where a rename would replace it). Raises ``FileExistsError`` when ``path``
    exists, ``OSError`` when it cannot be written; no partial file is left either way."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: check, then rename (a small race)
            if path.exists():
                raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
            os.rename(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: Path, refuse: Callable[[Path], None]) -> Iterator[Path]:
    """A temporary sibling of ``target`` to fill; on leaving the block it is renamed into
    place, after ``refuse(target)`` (which raises when ``target`` may not be taken) — never
    over a folder that holds files. On any error the sibling is removed: nothing half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        refuse(target)
        os.replace(staging, target)  # fails on a folder that is no longer empty: never overwrites
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
