"""The prediction log of one server process: off the request path, bounded, never silent.

A request hands its records to :meth:`PredictionLog.submit` (a lock, an append: no I/O).
The *collector* thread wakes every flush interval (or when a batch is waiting), decides
sampling, hashes personal data, and writes what it took to a spool segment on disk. The
*shipper* thread writes segments to the store in order and deletes them once committed;
while the store is down or slow, segments wait (it retries with backoff) and the service
goes on. Every record a request served ends in exactly one of the counters ``logged``,
``sampled_out``, ``dropped`` (memory queue full, spool full, or the disk refusing the
spool), or is still ``pending`` (in memory or in the spool):
``served = logged + sampled_out + dropped + pending``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelmill.config.serving import LogConfig
from modelmill.monitoring.records import RecordEncoder, parse_line, sampled_in
from modelmill.monitoring.spool import Spool
from modelmill.monitoring.store import LogStore, database_message

log = logging.getLogger("modelmill.serving")
OUTCOMES = ("served", "logged", "sampled_out", "dropped", "replayed")
Count = Callable[[str, int], None]
_Entry = tuple[str, list[dict[str, Any]], list[dict[str, Any]], str, str, float, float]
_RETENTION_EVERY_S = 3600.0
_ORPHANS_EVERY_S = 60.0
_MAX_BACKOFF_S = 5.0  # a store that is down is asked again this often, at most


class PredictionLog:
    def __init__(self, store: LogStore, settings: LogConfig, encoder: RecordEncoder, spool: Spool,
                 count: Count = lambda outcome, n: None) -> None:
        self.store = store
        self.settings = settings
        self.encoder = encoder
        self.spool = spool
        self.totals = dict.fromkeys(OUTCOMES, 0)
        self._count = count
        self._lock = threading.Lock()
        self._queue: deque[_Entry] = deque()
        self._queued = 0  # records in memory
        self._spooled = 0  # records of this process in the spool
        self._wake_collector = threading.Event()
        self._wake_shipper = threading.Event()
        self._stopping = False
        self._store_down_since: float | None = None
        self._collector = threading.Thread(target=self._collect_loop, name="modelmill-log-collect", daemon=True)
        self._shipper = threading.Thread(target=self._ship_loop, name="modelmill-log-ship", daemon=True)

    # ------------------------------------------------------------ request path

    def submit(self, request_id: str, records: list[dict[str, Any]], outputs: list[dict[str, Any]],
               model: str, version: str, latency_ms: float) -> None:
        n = len(records)
        with self._lock:
            accepted = self._queued + n <= self.settings.queue_size
            if accepted:
                self._queue.append((request_id, records, outputs, model, version, time.time(), latency_ms))
                self._queued += n
            self.totals["served"] += n
            self.totals["dropped"] += 0 if accepted else n
            full = self._queued >= self.settings.batch_size
        self._count("served", n)
        if not accepted:
            self._count("dropped", n)
        elif full:
            self._wake_collector.set()

    @property
    def pending(self) -> int:
        return self._queued + self._spooled

    @property
    def store_down(self) -> bool:
        return self._store_down_since is not None

    def _account(self, *, queued: int = 0, spooled: int = 0, **outcomes: int) -> None:
        """Move records between the counters in one step under the lock, so that
        ``served = logged + sampled_out + dropped + pending`` holds at every moment."""
        with self._lock:
            self._queued += queued
            self._spooled += spooled
            for outcome, n in outcomes.items():
                self.totals[outcome] += n
        for outcome, n in outcomes.items():
            if n:
                self._count(outcome, n)

    # ------------------------------------------------------------ lifetime

    def start(self) -> None:
        self._collector.start()
        self._shipper.start()

    def close(self, timeout: float) -> None:
        """Spool what memory holds, ship what the store takes within ``timeout``; the rest
        stays in the spool for the next process."""
        self._stopping = True
        self._wake_collector.set()
        self._collector.join(timeout)
        self._wake_shipper.set()
        self._shipper.join(max(1.0, timeout))
        self.spool.close()
        self.store.close()

    # ------------------------------------------------------------ collector

    def _collect_loop(self) -> None:
        while True:
            self._wake_collector.wait(self.settings.flush_interval_s)
            self._wake_collector.clear()
            try:
                self._collect()
            except Exception:  # a bug here must not end logging for the process's life
                log.exception("the prediction log's collector failed")
            if self._stopping:
                return

    def _collect(self) -> None:
        with self._lock:
            entries, self._queue = self._queue, deque()
        if not entries:
            return
        taken = sum(len(entry[1]) for entry in entries)
        lines: list[str] = []
        unreadable = 0
        rate = self.settings.sample
        for request_id, records, outputs, model, version, at, latency_ms in entries:
            kept = [row for row in range(len(records)) if sampled_in(request_id, row, rate)]
            if not kept:
                continue
            try:
                lines += self.encoder.lines(request_id, records, outputs, model, version, at, latency_ms, kept)
            except Exception:  # counted, never silent; the other requests' records go on
                log.exception("prediction log: the records of request %s could not be encoded", request_id)
                unreadable += len(kept)
        spooled = bool(lines) and self.spool.append(lines)
        self._account(queued=-taken, spooled=len(lines) if spooled else 0,
                      sampled_out=taken - len(lines) - unreadable, dropped=unreadable + (0 if spooled else len(lines)))
        if spooled:
            self._wake_shipper.set()
        elif lines:
            log.warning("prediction log: %d records dropped (the spool at %s is full or cannot be "
                        "written)", len(lines), self.spool.folder)

    # ------------------------------------------------------------ shipper

    def _ship_loop(self) -> None:
        backoff = self.settings.flush_interval_s
        next_orphans = next_retention = 0.0
        while True:
            self._wake_shipper.wait(backoff if self.store_down else self.settings.flush_interval_s)
            self._wake_shipper.clear()
            stopping = self._stopping
            try:
                if time.monotonic() >= next_orphans:
                    with self.spool.orphans() as orphans:
                        self._ship_all(orphans, own=False)
                    next_orphans = time.monotonic() + _ORPHANS_EVERY_S
                self._ship_all(self.spool.own_segments(), own=True)
                if self.settings.retention_days and time.monotonic() >= next_retention:
                    self._apply_retention()
                    next_retention = time.monotonic() + _RETENTION_EVERY_S
                if self._store_down_since is not None:
                    log.info("prediction log: the store %s is back after %.0f s; the spool is written",
                             self.store.label, time.monotonic() - self._store_down_since)
                    self._store_down_since = None
                backoff = self.settings.flush_interval_s
            except _StoreDown as down:
                if self._store_down_since is None:
                    self._store_down_since = time.monotonic()
                    log.warning("prediction log: the store %s cannot be written (%s); records wait in "
                                "the spool at %s", self.store.label, down, self.spool.folder)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            except Exception:
                log.exception("the prediction log's shipper failed")
            if stopping:
                return

    def _ship_all(self, segments: Sequence[Path], *, own: bool) -> None:
        for segment in segments:
            try:
                text = segment.read_text("utf-8", errors="replace")
            except FileNotFoundError:
                continue
            lines = text.split("\n")[:-1]  # not splitlines: U+2028 and friends may occur inside JSON strings
            rows = [row for row in map(parse_line, lines) if row is not None]
            size = self.settings.batch_size
            for start in range(0, len(rows), size):
                self._write(rows[start:start + size])
            segment.unlink(missing_ok=True)
            damaged = len(lines) - len(rows)
            if own:
                self._account(spooled=-len(lines), logged=len(rows), dropped=damaged)
            else:
                self._account(replayed=len(rows))
                if damaged:
                    log.warning("prediction log: %d damaged lines skipped in %s", damaged, segment.name)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        from sqlalchemy import exc

        try:
            self.store.write_predictions(rows)
        except exc.SQLAlchemyError as error:
            raise _StoreDown(database_message(error)) from None

    def _apply_retention(self) -> None:
        assert self.settings.retention_days is not None
        cutoff = time.time() - self.settings.retention_days * 86400
        deleted = self.store.delete_before(cutoff)
        if deleted:
            log.info("prediction log: %d records older than %g days deleted", deleted,
                     self.settings.retention_days)


class _StoreDown(Exception):
    pass
