"""The on-disk spool: records wait here until the store has them.

Every flush interval the writer moves the records it holds in memory into a new segment
file (written under a temporary name, then renamed, so a segment is whole or absent), and
the shipper writes segments to the store in order, deleting each once its transaction has
committed. So a ``kill -9`` loses at most the records of one flush interval, a store that
is down or slow only grows the spool, and a restart ships what an earlier process left:
replays are idempotent because the store keys records by (request id, row).

Each server process owns the segments named after it and holds an exclusive lock on its
lock file while it lives; its shipper process (:mod:`modelmill.monitoring.shipper`) writes
them to the store. Segments whose owner's lock can be taken belong to a process that
ended, and the next shipper to look ships them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelmill.errors import ServingError

SEGMENT_SUFFIX = ".tsv"


def default_spool_folder(store_label: str, sqlite_path: Path | None) -> Path:
    """Beside a SQLite file (``monitor.db-spool``), else under the user's state folder."""
    if sqlite_path is not None:
        return sqlite_path.with_name(sqlite_path.name + "-spool")
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "modelmill" / "spool" / hashlib.sha256(store_label.encode()).hexdigest()[:16]


class Spool:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.owner = f"{time.time_ns():020d}-{os.getpid():010d}"
            self._lock = os.open(folder / f"{self.owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            raise ServingError(f"serving.log.spool: cannot use {folder} as the prediction log's spool "
                               f"({error.strerror}). Fix: give a writable folder") from None
        self._sequence = 0

    def append(self, lines: list[str]) -> Path | None:
        """Write one segment; None when it does not fit in the spool or the disk refuses it."""
        data = "".join(lines).encode()
        if self.size() + len(data) > self.max_bytes:
            return None
        self._sequence += 1
        name = f"{self.owner}-{self._sequence:012d}{SEGMENT_SUFFIX}"
        temporary = self.folder / f".{name}.tmp"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self.folder / name)
        except OSError:
            temporary.unlink(missing_ok=True)
            return None
        return self.folder / name

    def size(self) -> int:
        total = 0
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.endswith(SEGMENT_SUFFIX):
                    try:
                        total += entry.stat().st_size
                    except OSError:
                        pass
        return total

    def own_segments(self) -> list[Path]:
        return sorted(self.folder.glob(f"{self.owner}-*{SEGMENT_SUFFIX}"))

    @staticmethod
    @contextmanager
    def adopt(folder: Path, *, keep: str) -> Iterator[list[Path]]:
        """Segments of processes that ended (other than ``keep``), locked for the caller
        while it ships them."""
        owners = {p.name.rsplit("-", 1)[0] for p in folder.glob(f"*{SEGMENT_SUFFIX}")} - {keep}
        taken: list[tuple[int, Path]] = []
        segments: list[Path] = []
        try:
            for owner in sorted(owners):
                lock_path = folder / f"{owner}.lock"
                try:
                    handle = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
                except OSError:
                    continue
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # that process is alive
                    os.close(handle)
                    continue
                taken.append((handle, lock_path))
                for partial in folder.glob(f".{owner}-*.tmp"):  # cut off mid-write: never whole
                    partial.unlink(missing_ok=True)
                segments += sorted(folder.glob(f"{owner}-*{SEGMENT_SUFFIX}"))
            yield segments
        finally:
            for handle, lock_path in taken:
                if not any(folder.glob(f"{lock_path.stem}-*{SEGMENT_SUFFIX}")):
                    lock_path.unlink(missing_ok=True)
                os.close(handle)

    def close(self) -> None:
        """Let go of the lock; the lock file goes too when no segment of ours is left."""
        if not self.own_segments():
            (self.folder / f"{self.owner}.lock").unlink(missing_ok=True)
        os.close(self._lock)
