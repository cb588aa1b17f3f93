"""Shadow mode: a challenger predicts the served records beside the model that answers them.

After ``/v1/predict`` has its answer, the records that the prediction log samples in are
offered to a :class:`ShadowRunner`: a lock and an append, so the request never waits, and
a full queue drops (counted). The runner's thread predicts them with the challenger in
batches and writes the predictions to the store's ``modelmill_shadow`` table, keyed like
the champion's rows, their outputs stored exactly as the log stores the champion's:
``LogStore.read_shadow`` puts the two side by side, with the label once it arrives. The
answer is always the champion's alone.

A challenger lives in the model folder's hidden ``.shadow/NAME/`` (a bundle or a run), so
no reload or restart ever serves it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modelmill.bundle import read_bundle
from modelmill.errors import ServingError
from modelmill.monitoring import identity_of
from modelmill.monitoring.records import sampled_in, stored_outputs
from modelmill.predictor.predictor import FAST_ROWS
from modelmill.serving.models import ServedModel
from modelmill.serving.problem import Problem
from modelmill.serving.versions import load_failure

if TYPE_CHECKING:
    from modelmill.monitoring.store import LogStore
    from modelmill.serving.metrics import ServerMetrics
    from modelmill.serving.state import ServerState

log = logging.getLogger("modelmill.serving")
OUTCOMES = ("predicted", "dropped", "failed")
QUEUE_RECORDS = 10_000  # records waiting for the challenger; more are dropped (counted), never waited for
# The thread wakes once a flush interval (1 s) and predicts what is queued in batches that
# the predictor takes without pandas: per record nearly as cheap as batches of hundreds
# (which pay pandas' fixed cost of about 10 ms; batches of 64 cost 3x the CPU a record),
# each call holding the interpreter for about a millisecond. Rows go to the store in
# statements of WRITE_ROWS (a row costs a third of what it costs in statements of 64).
# Waking for every batch instead spread the work evenly but cost 2.5x the CPU a request
# (thread hand-offs), and more latency at every percentile (benchmarks/shadow_overhead.py).
BATCH_RECORDS = FAST_ROWS
WRITE_ROWS = 250
STOP_TIMEOUT_S = 10.0
_Queued = tuple[str, int, dict[str, Any]]  # request id, row, record


def open_shadow(name: str, state: ServerState) -> ShadowRunner:
    """Read, check, load and warm the challenger ``.shadow/NAME/``: a runner, not started.

    Raises:
        Problem: 409 when the server has no prediction log, when the challenger is another
            model than the log's (inputs, target) or fails to load or warm up; 400 for an
            unsafe name, 404 for one that is not there.
    """
    prediction_log = state.prediction_log
    if prediction_log is None:
        raise Problem(409, "shadow_needs_log", "shadow mode needs the prediction log: a challenger's "
                      "predictions are only of use logged beside the served ones. Fix: serve with --log URL")
    path = state.root.locate_shadow(name)
    champion = state.predicting
    started = time.perf_counter()
    try:
        bundle = read_bundle(path)
        theirs = identity_of(bundle.config().name, bundle.input_schema())
    except Exception as exc:
        log.exception("challenger %s at %s failed to read", name, path)
        raise load_failure(state.root, name, exc) from None
    differences = identity_of(champion.name, champion.predictor.input_schema()).differences(theirs)
    if differences:
        raise Problem(409, "shadow_mismatch", f"challenger {name!r} is not the model the prediction log holds "
                      f"({'; '.join(differences)}), so its predictions cannot stand beside the served ones. "
                      "Fix: shadow a model trained on the same inputs and target")
    try:
        model = ServedModel.load(bundle, name, state.settings)
        model.warm_up(state.settings.max_batch_size)
    except Exception as exc:  # the champion serves on, unshadowed
        log.exception("challenger %s at %s failed to load or warm up", name, path)
        raise load_failure(state.root, name, exc) from None
    log.info("loaded challenger %s in %.2f s", name, time.perf_counter() - started)
    return ShadowRunner(model, prediction_log.store, state.metrics, sample=prediction_log.settings.sample,
                        interval_s=prediction_log.settings.flush_interval_s)


class ShadowRunner:
    """A challenger predicting served records on a thread of its own, off the request path.

    Every record offered ends in one of ``predicted`` (stored), ``dropped`` (the queue was
    full, or it was still queued when the runner stopped) or ``failed`` (the challenger or
    the store failed on it), or is still queued.
    """

    def __init__(self, model: ServedModel, store: LogStore, metrics: ServerMetrics, *, sample: float,
                 interval_s: float, batch_size: int = BATCH_RECORDS, queue_records: int = QUEUE_RECORDS) -> None:
        self.model = model
        self.store = store
        self.sample = sample
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.queue_records = queue_records
        self.since = time.time()
        self.totals = dict.fromkeys(OUTCOMES, 0)
        self._counters = {outcome: metrics.shadow_records.labels(outcome) for outcome in OUTCOMES}
        self._lock = threading.Lock()
        self._queue: deque[_Queued] = deque()
        self._in_hand = 0  # records taken from the queue, not yet stored
        self._wake = threading.Event()
        self._stopping = False
        self._store_failing = False
        self._model_failed = False
        self._thread = threading.Thread(target=self._run, name="modelmill-shadow", daemon=True)

    @property
    def version(self) -> str:
        return self.model.version

    def describe(self) -> dict[str, Any]:
        since = datetime.fromtimestamp(self.since, timezone.utc).isoformat(timespec="seconds")
        return {"version": self.version, "since": since, "records": self.totals["predicted"],
                "dropped": self.totals["dropped"], "failed": self.totals["failed"],
                "queued": len(self._queue) + self._in_hand}

    # ------------------------------------------------------------ request path

    def offer(self, request_id: str, records: list[dict[str, Any]]) -> None:
        """Queue the records of an answered request that the log samples in (so that every
        shadow row has its champion's row); drop them, counted, when the queue is full."""
        kept = [(request_id, row, record) for row, record in enumerate(records)
                if sampled_in(request_id, row, self.sample)]
        if not kept:
            return
        with self._lock:
            accepted = not self._stopping and len(self._queue) + len(kept) <= self.queue_records
            if accepted:
                self._queue.extend(kept)
            filling = len(self._queue) >= self.queue_records // 2
        if not accepted:
            self._count("dropped", len(kept))
        elif filling:  # else the interval (the log's flush interval) wakes the thread
            self._wake.set()

    # ------------------------------------------------------------ lifetime

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """No more records from now on: the batch in hand is finished and stored, what is
        still queued is dropped (counted). Waits up to ``timeout`` for the thread."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._thread.ident is None:  # never started: what is queued is dropped here
            with self._lock:
                left, self._queue = len(self._queue), deque()
            self._count("dropped", left)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("shadow mode: challenger %s did not stop within %.0f s", self.version, timeout)

    # ------------------------------------------------------------ thread

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self._store(self._predict_queued())
            except Exception:  # a bug here must not end shadowing for the process's life
                log.exception("shadow mode: challenger %s failed", self.version)
            self._in_hand = 0
        with self._lock:
            left, self._queue = len(self._queue), deque()
        self._count("dropped", left)

    def _predict_queued(self) -> list[dict[str, Any]]:
        """Predict what is queued now, a batch at a time; what the runner stops before is dropped."""
        with self._lock:
            taken, self._queue = list(self._queue), deque()
            self._in_hand = len(taken)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(taken), self.batch_size):
            if self._stopping:
                self._count("dropped", len(taken) - start)
                break
            rows += self._predict(taken[start:start + self.batch_size])
        return rows

    def _predict(self, batch: list[_Queued]) -> list[dict[str, Any]]:
        """The shadow rows of ``batch``; a batch that fails is re-run record by record, so
        one record the challenger cannot take fails alone."""
        started = time.perf_counter()
        try:
            outputs = self.model.predict([record for _, _, record in batch])
            if len(outputs) != len(batch):
                raise ServingError(f"{len(outputs)} predictions for {len(batch)} records")
        except Exception as exc:
            if len(batch) > 1:
                return [row for one in batch for row in self._predict([one])]
            if not self._model_failed:
                log.warning("shadow mode: challenger %s failed on a record (%s: %s); such records are counted "
                            "as failed", self.version, type(exc).__name__, str(exc)[:200])
                self._model_failed = True
            self._count("failed", 1)
            return []
        # latency: the challenger's model call that predicted the record (a batch, as the champion's are)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        at = time.time()
        return [{"request_id": request_id, "row": row, "version": self.version, "logged_at": at,
                 "latency_ms": latency_ms, "outputs": stored_outputs(output)}
                for (request_id, row, _), output in zip(batch, outputs)]

    def _store(self, rows: list[dict[str, Any]]) -> None:
        """Write the rows; a store that refuses them costs them (counted), never the thread."""
        for start in range(0, len(rows), WRITE_ROWS):
            self._write(rows[start:start + WRITE_ROWS])

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            self.store.write_shadow(rows)
        except Exception as exc:
            if not self._store_failing:
                first = (str(exc).splitlines() or [""])[0][:200]
                log.warning("shadow mode: the store %s refused the challenger's predictions (%s: %s); they are "
                            "counted as failed until it takes them again", self.store.label,
                            type(exc).__name__, first)
                self._store_failing = True
            self._count("failed", len(rows))
            return
        if self._store_failing:
            log.info("shadow mode: the store %s takes the challenger's predictions again", self.store.label)
            self._store_failing = False
        self._count("predicted", len(rows))

    def _count(self, outcome: str, records: int) -> None:
        if records:
            with self._lock:
                self.totals[outcome] += records
            self._counters[outcome].inc(records)
