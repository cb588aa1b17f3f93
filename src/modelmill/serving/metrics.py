"""Prometheus metrics of one server process, in a registry of its own (so that two apps in
one process, as in tests, do not share counters).

With ``--workers N`` every worker writes its values to files in a folder shared by the
workers (prometheus_client's multiprocess mode, switched on by ``PROMETHEUS_MULTIPROC_DIR``
before the workers start), and a scrape of any worker answers the sum over all of them.
Gauges are refreshed from their sources before each scrape and, with several workers,
every second, so that the worker answering a scrape sees the others' current values.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# The `_created` timestamp series double every counter for no use to dashboards.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MULTIPROCESS_ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENVIRONMENT))


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("modelmill_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("modelmill_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_records = Histogram("modelmill_batch_records", "Records per model call",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        self.predictions = Counter("modelmill_predictions", "Records predicted", registry=self.registry)
        self.queue_depth = Gauge("modelmill_queue_depth", "Requests waiting for the model",
                                 registry=self.registry, multiprocess_mode="livesum")
        self.ready = Gauge("modelmill_ready", "1 when the server (every worker) takes traffic",
                           registry=self.registry, multiprocess_mode="livemin")
        self.swaps = Counter("modelmill_version_changes", "Reloads and rollbacks by outcome", ["outcome"],
                             registry=self.registry)
        self.model_info = Gauge("modelmill_model_info", "The served model and version (value 1)",
                                ["name", "version"], registry=self.registry, multiprocess_mode="livemax")
        self.version_broken = Gauge("modelmill_version_broken", "1 for each version of the model folder that "
                                    "failed to load or warm up (GET /v1/model says why)", ["version"],
                                    registry=self.registry, multiprocess_mode="livemax")
        self.log_records = Counter(
            "modelmill_log_records", "Records by what the prediction log did with them: served = logged + "
            "sampled_out + dropped + pending; replayed: records an ended process left in the spool",
            ["outcome"], registry=self.registry)
        self.log_pending = Gauge("modelmill_log_pending", "Records of the prediction log in memory or in the spool",
                                 registry=self.registry, multiprocess_mode="livesum")
        self.log_store_up = Gauge("modelmill_log_store_up", "1 while the prediction store takes writes",
                                  registry=self.registry, multiprocess_mode="livemin")
        # shadow mode (serving/shadow.py): a challenger predicts the logged records beside the served model
        self.shadow_records = Counter("modelmill_shadow_records", "Records of shadow mode by outcome: predicted "
                                      "(and stored), dropped (queue full, or still queued when the shadow stopped), "
                                      "failed (the challenger or the store failed)", ["outcome"],
                                      registry=self.registry)
        self.shadow_info = Gauge("modelmill_shadow_info", "The challenger predicting in shadow (value 1)",
                                 ["version"], registry=self.registry, multiprocess_mode="livemax")
        # the latest window of the prediction log against the reference profile (serving/drift.py)
        self.drift_score = Gauge("modelmill_drift_score", "How far each column (and the prediction) moved in the "
                                 "latest window: Jensen-Shannon distance of the binned distributions",
                                 ["column"], registry=self.registry, multiprocess_mode="livemax")
        self.drift_alarm = Gauge("modelmill_drift_alarm", "1 when a column's drift or data-quality alarm fires in "
                                 "the latest window", ["column"], registry=self.registry, multiprocess_mode="livemax")
        self.monitoring_alarm = Gauge("modelmill_monitoring_alarm", "1 when any alarm fires in the latest window",
                                      registry=self.registry, multiprocess_mode="livemax")
        self.estimated_metric = Gauge("modelmill_estimated_metric", "The followed metric estimated from the "
                                      "predicted probabilities of the latest window (no labels)", ["metric"],
                                      registry=self.registry, multiprocess_mode="livemax")
        self.monitoring_rows = Gauge("modelmill_monitoring_window_rows", "Records in the latest judged window",
                                     registry=self.registry, multiprocess_mode="livemax")
        self._sources: list[tuple[Gauge, Callable[[], float]]] = []
        self._log_children: dict[str, Counter] = {}
        self._serving: tuple[str, str] | None = None
        self._shadowing: str | None = None

    def watch(self, gauge: Gauge, source: Callable[[], float]) -> None:
        """Keep ``gauge`` at ``source()``, read at each refresh."""
        self._sources.append((gauge, source))

    def refresh(self) -> None:
        for gauge, source in self._sources:
            gauge.set(source())

    def serving(self, name: str, version: str) -> None:
        if self._serving is not None:  # zero, not clear: a cleared series would live on in the workers' files
            self.model_info.labels(*self._serving).set(0)
        self.model_info.labels(name, version).set(1)
        self._serving = (name, version)

    def broken(self, version: str, is_broken: bool) -> None:
        """Mark a version broken (1) or no longer broken (0: zero, not clear, as above)."""
        self.version_broken.labels(version).set(1 if is_broken else 0)

    def shadowing(self, version: str | None) -> None:
        """The challenger in shadow now (None: none); the previous one's series goes to 0, as above."""
        if self._shadowing is not None:
            self.shadow_info.labels(self._shadowing).set(0)
        if version is not None:
            self.shadow_info.labels(version).set(1)
        self._shadowing = version

    def observe_batch(self, records: int) -> None:
        self.batch_records.observe(records)
        self.predictions.inc(records)

    def count_log(self, outcome: str, records: int) -> None:
        counter = self._log_children.get(outcome)
        if counter is None:  # a child per outcome, looked up once: this runs for every request
            counter = self._log_children[outcome] = self.log_records.labels(outcome)
        counter.inc(records)

    def exposition(self) -> bytes:
        self.refresh()
        if multiprocess():
            from prometheus_client import multiprocess as shared

            registry = CollectorRegistry()
            shared.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
