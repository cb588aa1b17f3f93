"""The shipper: a process of its own that writes spool segments to the store.

Each server process starts one (``python -m modelmill.monitoring.shipper``) and keeps its
standard input open; the settings come as the first line of JSON there (never on the
command line, where a password would show in ``ps``). The shipper writes the segments of
its server (by owner name) in order, one transaction per ``batch_size`` records, deletes
each once committed, and reports on standard output, one line per event:

    own LINES ROWS      a segment of its server is in the store (LINES - ROWS were damaged)
    replayed ROWS       a segment that an ended process left is in the store
    down MESSAGE        the store cannot be written; segments wait and are retried
    up SECONDS          the store is back

It also ships the segments of processes that ended (their lock is free) and applies the
retention. The database work, its I/O and its interpreter lock stay out of the serving
process: measured on two cores, writing from threads of the server cost about 9% of its
throughput at 64 concurrent clients. When its server ends (standard input closes, also
after a ``kill -9``) it ships what is left and exits.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelmill.monitoring.records import parse_line
from modelmill.monitoring.spool import SEGMENT_SUFFIX, Spool
from modelmill.monitoring.store import LogStore, database_message

Report = Callable[[str], None]
RETENTION_EVERY_S = 3600.0
ORPHANS_EVERY_S = 60.0
MAX_BACKOFF_S = 5.0  # a store that is down is asked again this often, at most


class StoreDown(Exception):
    pass


class Shipper:
    def __init__(self, store: LogStore, folder: Path, owner: str, *, batch_size: int, interval: float,
                 retention_days: float | None, report: Report) -> None:
        self.store = store
        self.folder = folder
        self.owner = owner
        self.batch_size = batch_size
        self.interval = interval
        self.retention_days = retention_days
        self.report = report
        self.wake = threading.Event()
        self.stopping = False
        self._down_since: float | None = None

    def run(self) -> None:
        backoff = self.interval
        next_orphans = next_retention = 0.0
        while True:
            self.wake.wait(backoff)
            self.wake.clear()
            stopping = self.stopping
            try:
                if time.monotonic() >= next_orphans or stopping:
                    with Spool.adopt(self.folder, keep=self.owner) as orphans:
                        self.ship(orphans, own=False)
                    next_orphans = time.monotonic() + ORPHANS_EVERY_S
                self.ship(sorted(self.folder.glob(f"{self.owner}-*{SEGMENT_SUFFIX}")), own=True)
                if self.retention_days and time.monotonic() >= next_retention:
                    self.store.delete_before(time.time() - self.retention_days * 86400)
                    next_retention = time.monotonic() + RETENTION_EVERY_S
                if self._down_since is not None:
                    self.report(f"up {time.monotonic() - self._down_since:.0f}")
                    self._down_since = None
                backoff = self.interval
            except StoreDown as down:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    self.report(f"down {down}")
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            if stopping:
                return

    def ship(self, segments: Sequence[Path], *, own: bool) -> None:
        from sqlalchemy import exc

        for segment in segments:
            try:
                text = segment.read_text("utf-8", errors="replace")
            except FileNotFoundError:  # shipped by another process meanwhile
                continue
            lines = text.split("\n")[:-1]  # not splitlines: U+2028 and friends may occur inside JSON
            rows = [row for row in map(parse_line, lines) if row is not None]
            try:
                for start in range(0, len(rows), self.batch_size):
                    self.store.write_predictions(rows[start:start + self.batch_size])
            except exc.SQLAlchemyError as error:
                raise StoreDown(database_message(error)) from None
            segment.unlink(missing_ok=True)
            self.report(f"own {len(lines)} {len(rows)}" if own else f"replayed {len(rows)}")


def main() -> None:
    """Entry point of the shipper process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the server: finish, then exit
    settings: dict[str, Any] = json.loads(sys.stdin.readline())
    lock = threading.Lock()

    def report(line: str) -> None:
        with lock:
            sys.stdout.write(line.replace("\n", " ") + "\n")
            sys.stdout.flush()

    store = LogStore(settings["url"])
    shipper = Shipper(store, Path(settings["folder"]), settings["owner"], batch_size=settings["batch_size"],
                      interval=settings["interval"], retention_days=settings["retention_days"], report=report)

    def stop(*_: object) -> None:
        shipper.stopping = True
        shipper.wake.set()

    signal.signal(signal.SIGTERM, stop)

    def watch_server() -> None:  # standard input closes when the server ends, however it ends
        while sys.stdin.readline():
            shipper.wake.set()  # the server says: a segment is ready
        stop()

    threading.Thread(target=watch_server, daemon=True).start()
    try:
        shipper.run()
    finally:
        store.close()


if __name__ == "__main__":
    main()
