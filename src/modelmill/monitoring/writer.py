"""The prediction log of one server process: off the request path, bounded, never silent.

A request hands its records to :meth:`PredictionLog.submit` (a lock, an append: no I/O).
The *collector* thread wakes every flush interval (or when a batch is waiting), decides
sampling, hashes personal data, and writes what it took to a spool segment on disk. The
*shipper*, a process of its own (:mod:`modelmill.monitoring.shipper`), writes segments to
the store in order and deletes them once committed; while the store is down or slow,
segments wait (it retries with backoff) and the service goes on. Every record a request
served ends in exactly one of the counters ``logged``, ``sampled_out``, ``dropped``
(memory queue full, spool full, or the disk refusing the spool), or is still ``pending``
(in memory or in the spool): ``served = logged + sampled_out + dropped + pending``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from modelmill.config.serving import LogConfig
from modelmill.monitoring.records import RecordEncoder, sampled_in
from modelmill.monitoring.spool import Spool
from modelmill.monitoring.store import LogStore

log = logging.getLogger("modelmill.serving")
OUTCOMES = ("served", "logged", "sampled_out", "dropped", "replayed")
Count = Callable[[str, int], None]
_Entry = tuple[str, list[dict[str, Any]], list[dict[str, Any]], str, str, float, float]
_RESTART_AFTER_S = 1.0


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
        self._stopping = False
        self._store_down = False
        self._collector = threading.Thread(target=self._collect_loop, name="modelmill-log-collect", daemon=True)
        self._shipper: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._shipper_lock = threading.Lock()

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
            full = self._queued >= self.settings.queue_size // 2  # else the flush interval paces the writer
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
        return self._store_down

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
        self._start_shipper()
        self._collector.start()

    def close(self, timeout: float) -> None:
        """Spool what memory holds and let the shipper write what the store takes within
        ``timeout``; the rest stays in the spool for the next process."""
        self._stopping = True
        self._wake_collector.set()
        self._collector.join(timeout)
        with self._shipper_lock:
            shipper = self._shipper
        if shipper is not None:
            try:
                assert shipper.stdin is not None
                shipper.stdin.close()  # the shipper's signal to ship what is left and end
                shipper.wait(max(1.0, timeout))
            except (OSError, subprocess.TimeoutExpired):
                shipper.kill()
            if self._reader is not None:
                self._reader.join(5)  # its last reports counted before we return
        self.spool.close()
        self.store.close()

    # ------------------------------------------------------------ shipper process

    def _start_shipper(self) -> None:
        """Start the shipper, hand it the settings (on its standard input: the URL may hold a
        password) and read its reports on a thread of ours."""
        process = subprocess.Popen([sys.executable, "-m", "modelmill.monitoring.shipper"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, bufsize=1)
        assert process.stdin is not None and process.stdout is not None
        settings = {"url": self.store.url, "folder": str(self.spool.folder), "owner": self.spool.owner,
                    "batch_size": self.settings.batch_size, "interval": self.settings.flush_interval_s,
                    "retention_days": self.settings.retention_days}
        process.stdin.write(json.dumps(settings) + "\n")
        process.stdin.flush()
        reader = threading.Thread(target=self._read_reports, args=(process, process.stdout),
                                  name="modelmill-log-reports", daemon=True)
        with self._shipper_lock:
            self._shipper, self._reader = process, reader
        reader.start()

    def _read_reports(self, process: subprocess.Popen[str], reports: IO[str]) -> None:
        for line in reports:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "own":
                lines, rows = (int(n) for n in rest.split())
                self._account(spooled=-lines, logged=rows, dropped=lines - rows)
            elif kind == "replayed":
                self._account(replayed=int(rest))
            elif kind == "down":
                self._store_down = True
                log.warning("prediction log: the store %s cannot be written (%s); records wait in the spool at %s",
                            self.store.label, rest, self.spool.folder)
            elif kind == "up":
                self._store_down = False
                log.info("prediction log: the store %s is back after %s s; the spool is written",
                         self.store.label, rest)
        code = process.wait()
        if not self._stopping:  # it crashed: records wait in the spool until another one runs
            log.error("prediction log: the shipper process ended (exit %s); starting another", code)
            time.sleep(_RESTART_AFTER_S)
            if not self._stopping:
                self._start_shipper()

    def _wake_shipper(self) -> None:
        with self._shipper_lock:
            shipper = self._shipper
        try:
            if shipper is not None and shipper.stdin is not None:
                shipper.stdin.write("\n")
                shipper.stdin.flush()
        except (OSError, ValueError):  # it ended; the reader starts another
            pass

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
        segment = self.spool.append(lines) if lines else None
        self._account(queued=-taken, spooled=len(lines) if segment else 0,
                      sampled_out=taken - len(lines) - unreadable, dropped=unreadable + (0 if segment else len(lines)))
        if segment is not None:
            self._wake_shipper()
        elif lines:
            log.warning("prediction log: %d records dropped (the spool at %s is full or cannot be "
                        "written)", len(lines), self.spool.folder)
