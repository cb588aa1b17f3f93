"""Traffic for the closed-loop tests: records sent to the real service, labels sent later by
feedback, a background load that remembers every answer, and the CLI in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

from modelmill.monitoring.export import open_log
from tests.retraining.conftest import ADMIN_TOKEN, FEEDBACK_TOKEN, INPUTS

ENV = {"MODELMILL_ADMIN_TOKEN": ADMIN_TOKEN, "MODELMILL_FEEDBACK_TOKEN": FEEDBACK_TOKEN}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelmill.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "COLUMNS": "200", **(env or {})})


def records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return json.loads(frame[INPUTS].to_json(orient="records"))


def send(url: str, traffic: pd.DataFrame, *, prefix: str = "shift", per_request: int = 50
         ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The traffic in requests of ``per_request`` records: the answers' predictions, and the
    labels to send later (by request id and row)."""
    answers, labels = [], []
    with httpx.Client(base_url=url, timeout=60) as http:
        for start in range(0, len(traffic), per_request):
            part = traffic.iloc[start:start + per_request]
            request_id = f"{prefix}{start:08d}"
            answer = http.post("/v1/predict", json={"instances": records(part)}, headers={"X-Request-ID": request_id})
            assert answer.status_code == 200, answer.text
            answers += answer.json()["predictions"]
            labels += [{"request_id": request_id, "row": n, "value": value} for n, value in enumerate(part["income"])]
    return answers, labels


def send_with_late_labels(url: str, traffic: pd.DataFrame) -> None:
    """The traffic, then every label by feedback."""
    send_labels(url, send(url, traffic)[1])


def send_labels(url: str, labels: list[dict[str, object]]) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        for start in range(0, len(labels), 1000):
            answer = http.post("/v1/feedback", json={"labels": labels[start:start + 1000]},
                               headers={"Authorization": f"Bearer {FEEDBACK_TOKEN}"})
            assert answer.status_code == 200, answer.text


def wait_for_labels(url: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        store = open_log(url)
        try:
            if store.count() >= count and store.labels_since(0) >= count:
                return
        finally:
            store.close()
        time.sleep(0.2)
    raise AssertionError("the records did not reach the log")


class Load:
    """Clients sending one record a request until stopped: every answer's status and version."""

    def __init__(self, url: str, frame: pd.DataFrame, clients: int = 2) -> None:
        self.url, self.rows = url, records(frame)
        self.statuses: list[int] = []
        self.versions: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self, n: int) -> None:
        i = n
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    answer = http.post("/v1/predict", json={"instances": [self.rows[i % len(self.rows)]]})
                except httpx.HTTPError as exc:
                    self.errors.append(type(exc).__name__)
                    continue
                self.statuses.append(answer.status_code)
                if answer.status_code == 200:
                    self.versions.append(answer.json()["version"])
                i += 2
                self._stop.wait(0.02)


