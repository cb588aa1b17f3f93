"""Micro-batching, the bounded queue and the per-request timeout, over real HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.serving.conftest import LiveServer, live_server, record


async def _post_all(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=len(bodies))) as client:
        return list(await asyncio.gather(*(client.post("/v1/predict", json=b) for b in bodies)))


def _slow_model(live: LiveServer, seconds: float, release: threading.Event | None = None,
                entered: threading.Event | None = None) -> None:
    """Fault injection: the served model takes ``seconds`` (or hangs until ``release``); ``entered``
    is set once a call has begun."""
    model = live.state.current
    real = model.predict

    def slow(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if entered is not None:
            entered.set()
        if release is not None:
            release.wait(60)
        else:
            time.sleep(seconds)
        return real(records)

    model.predict = slow  # type: ignore[method-assign]


def _histogram(http: httpx.Client, name: str) -> dict[str, float]:
    lines = [line for line in http.get("/metrics").text.splitlines() if line.startswith(name)]
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines}


def test_concurrent_requests_share_model_calls(trained_versions: Path) -> None:
    with live_server(trained_versions, max_wait_ms=50) as live:
        _slow_model(live, 0.2)  # while one call runs, the others queue up and are batched
        responses = asyncio.run(_post_all(live.url, [{"instances": [record(x=i / 10)]} for i in range(24)]))
        assert [r.status_code for r in responses] == [200] * 24
        with httpx.Client(base_url=live.url) as http:
            metrics = _histogram(http, "modelmill_batch_records")
    calls = metrics["modelmill_batch_records_count"]
    assert metrics["modelmill_batch_records_sum"] == 24  # warm-up calls bypass the batcher
    assert calls < 12, f"24 concurrent requests took {calls} model calls"


def test_batching_off_calls_the_model_once_per_request(trained_versions: Path) -> None:
    with live_server(trained_versions, max_batch_size=1) as live:
        responses = asyncio.run(_post_all(live.url, [{"instances": [record()]} for _ in range(12)]))
        assert all(r.status_code == 200 for r in responses)
        with httpx.Client(base_url=live.url) as http:
            assert _histogram(http, "modelmill_batch_records")["modelmill_batch_records_count"] == 12


def test_one_bad_record_fails_only_its_own_request(trained_versions: Path) -> None:
    """A date the schema lets through (any text) but the date feature cannot parse."""
    with live_server(trained_versions, max_wait_ms=200) as live:
        _slow_model(live, 0.3)
        bodies = [{"instances": [record(x=i / 10)]} for i in range(8)]
        bodies[3] = {"instances": [record(when="the day after tomorrow")]}
        responses = asyncio.run(_post_all(live.url, bodies))
        with httpx.Client(base_url=live.url) as http:
            calls = _histogram(http, "modelmill_batch_records")["modelmill_batch_records_count"]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 422, 200, 200, 200, 200]
    error = responses[3].json()["error"]
    assert error["code"] == "invalid_record" and "'when'" in error["message"]
    assert calls < 8 + 8  # the bad request's batch was re-run request by request, not everything twice


def test_full_queue_answers_503_with_retry_after(trained_versions: Path) -> None:
    release = threading.Event()
    served: list[int] = []

    def post(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as own:  # one connection each
            served.append(own.post("/v1/predict", json={"instances": [record()]}).status_code)

    entered = threading.Event()
    with live_server(trained_versions, queue_size=2, max_batch_size=1, timeout_s=60) as live:
        _slow_model(live, 0, release, entered)
        clients = [threading.Thread(target=post, args=(live.url,)) for _ in range(3)]
        try:
            for client in clients:  # one request in the (hanging) model, two queued
                client.start()
            deadline = time.monotonic() + 30
            # both: two queued while none is in the model yet would let the model take one and the
            # request below be queued in its place (and one of the three refused instead)
            while not entered.is_set() or live.state.batcher.depth < 2:
                assert time.monotonic() < deadline, "the two requests never reached the queue"
                time.sleep(0.01)
            with httpx.Client(base_url=live.url, timeout=60) as http:
                refused = http.post("/v1/predict", json={"instances": [record()]})
        finally:
            release.set()
            for client in clients:
                client.join(60)
    # refused at once (a request that was queued instead would wait for the model, 60 s)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    assert served == [200, 200, 200]


def test_a_hanging_model_gets_504_at_the_timeout(trained_versions: Path) -> None:
    release = threading.Event()
    with live_server(trained_versions, timeout_s=0.5) as live:
        _slow_model(live, 0, release)
        try:
            with httpx.Client(base_url=live.url, timeout=30) as http:
                started = time.perf_counter()
                answer = http.post("/v1/predict", json={"instances": [record()]})
                waited = time.perf_counter() - started
                assert answer.status_code == 504 and answer.json()["error"]["code"] == "timeout"
                assert 0.4 < waited < 5
                assert http.get("/healthz").status_code == 200  # the event loop is not blocked
        finally:
            release.set()
