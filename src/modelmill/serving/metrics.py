"""Prometheus metrics of one server process, in a registry of its own (so that two apps in
one process, as in tests, do not share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# The `_created` timestamp series double every counter for no use to dashboards.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


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
                                 registry=self.registry)
        self.ready = Gauge("modelmill_ready", "1 when the server takes traffic", registry=self.registry)
        self.swaps = Counter("modelmill_version_changes", "Reloads and rollbacks by outcome", ["outcome"],
                             registry=self.registry)
        self.model_info = Gauge("modelmill_model_info", "The served model and version (value 1)",
                                ["name", "version"], registry=self.registry)

    def watch(self, queue_depth: Callable[[], int], ready: Callable[[], bool]) -> None:
        self.queue_depth.set_function(lambda: float(queue_depth()))
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)

    def serving(self, name: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version).set(1)

    def observe_batch(self, records: int) -> None:
        self.batch_records.observe(records)
        self.predictions.inc(records)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
