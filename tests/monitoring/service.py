"""Helpers of the prediction-log service tests: the real ``modelmill serve`` in its own
process, a load of concurrent clients that remembers every record it was answered, and
the log's counters read from ``/metrics``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.serving.conftest import free_port

PLANTED = ["zoe.quartermaine@example.org", "4111 1111 1111 1111", "Bartholomew Featherstonehaugh"]


def record(i: int) -> dict[str, Any]:
    return {"x": (i % 50) / 10 - 2.5, "colour": ["red", "green", "blue"][i % 3], "flag": "yes",
            "when": "2021-03-04", "review": f"{PLANTED[i % 3]} great tasty"}


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)

    def flat(self) -> str:
        """The output with rich's line wrapping undone."""
        return " ".join(self.text().split())


def start_server(models: Path, *args: str, env: dict[str, str] | None = None,
                 preexec: Callable[[], None] | None = None, wait: bool = True) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "modelmill.cli", "serve", str(models), "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, preexec_fn=preexec)
    server = Server(process, f"http://127.0.0.1:{port}")
    reader = threading.Thread(target=lambda: server.output.extend(iter(process.stdout.readline, "")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    if wait:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                reader.join(5)
                raise AssertionError(f"the server exited early:\n{server.text()}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not become ready")
    return server


def stop_server(server: Server) -> int:
    if server.process.poll() is None:
        server.process.terminate()
    return server.process.wait(60)


@dataclass
class Answered:
    request_id: str
    records: int
    at: float


@dataclass
class Load:
    """Clients sending ``records`` records a request until stopped; what they were answered."""

    url: str
    clients: int = 8
    records: int = 4
    answered: list[Answered] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self

    def _client(self, n: int) -> None:
        i = n * 1_000_000
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                request_id = uuid.uuid4().hex
                body = {"instances": [record(i + k) for k in range(self.records)]}
                i += self.records
                try:
                    answer = http.post("/v1/predict", json=body, headers={"X-Request-ID": request_id})
                except httpx.TransportError as exc:
                    self.failed.append(type(exc).__name__)
                    if self._stop.is_set():
                        return
                    continue
                if answer.status_code == 200:
                    self.answered.append(Answered(request_id, self.records, time.monotonic()))
                else:
                    self.failed.append(f"{answer.status_code} {answer.text[:200]}")

    @property
    def served(self) -> int:
        return sum(a.records for a in self.answered)


def log_counters(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    counters = {m.group(1): float(m.group(2)) for m in
                re.finditer(r'^modelmill_log_records_total\{outcome="(\w+)"\} ([0-9.e+]+)$', text, re.M)}
    pending = re.search(r"^modelmill_log_pending ([0-9.e+]+)$", text, re.M)
    counters["pending"] = float(pending.group(1)) if pending else float("nan")
    requests = re.findall(r'^modelmill_requests_total\{route="/v1/predict",status="200"\} ([0-9.e+]+)$', text, re.M)
    counters["requests"] = float(requests[0]) if requests else 0.0
    for outcome in ("served", "logged", "sampled_out", "dropped", "replayed"):
        counters.setdefault(outcome, 0.0)
    return counters


def settled(url: str, served: int, timeout: float = 60) -> dict[str, float]:
    """The counters once every served record has left memory and spool (or at the timeout:
    a record silently lost keeps ``logged + sampled_out + dropped`` short of ``served``)."""
    deadline = time.monotonic() + timeout
    while True:
        counters = log_counters(url)
        accounted = counters["logged"] + counters["sampled_out"] + counters["dropped"]
        if (counters["pending"] == 0 and counters["served"] >= served and accounted == counters["served"]) \
                or time.monotonic() > deadline:
            return counters
        time.sleep(0.2)


def stored_keys(url: str) -> list[tuple[str, int]]:
    """Every (request id, row) in a prediction store, duplicates included."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return [(str(r), int(n)) for r, n in
                    connection.exec_driver_sql("SELECT request_id, row FROM modelmill_predictions")]
    finally:
        engine.dispose()


def answered_keys(load: Load) -> set[tuple[str, int]]:
    return {(a.request_id, row) for a in load.answered for row in range(a.records)}
