"""Adaptive micro-batching: concurrent requests share one model call.

Requests queue their records; one model thread takes what is queued, up to
``max_batch_size`` records. It waits for more (up to ``max_wait_ms``) only while other
requests are still arriving — being read or validated — so an idle server answers a
lone request at once, and a busy one fills its batches. The queue is bounded: when full,
requests are refused with 503 at once instead of piling up. A batch whose model call
fails is re-run request by request, so one bad record fails only its own request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelmill.errors import ModelmillError
from modelmill.serving.models import ServedModel
from modelmill.serving.problem import Problem, without_paths

log = logging.getLogger("modelmill.serving")

Outcome = tuple[list[dict[str, Any]], ServedModel]


@dataclass(eq=False)
class _Job:
    model: ServedModel
    records: list[dict[str, Any]]
    future: asyncio.Future[Outcome]
    loop: asyncio.AbstractEventLoop
    abandoned: bool = False
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, *, max_batch_size: int, max_wait_ms: float, queue_size: int,
                 on_batch: Callable[[int], None] = lambda records: None) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.queue_size = queue_size
        self.on_batch = on_batch
        self.arriving = 0  # requests being read or validated; touched by the event loop only
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="modelmill-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Finish what is queued, then end the model thread (waits up to ``timeout``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def depth(self) -> int:
        return len(self._jobs)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def predict(self, model: ServedModel, records: list[dict[str, Any]], timeout: float) -> Outcome:
        """Predictions for ``records`` from ``model``; 503 when the queue is full, 504 on timeout."""
        loop = asyncio.get_running_loop()
        job = _Job(model, records, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise Problem(503, "shutting_down", "the server is shutting down; retry on another instance",
                              headers={"Retry-After": "1"})
            if len(self._jobs) >= self.queue_size:
                raise Problem(503, "overloaded", f"the server is at capacity ({self.queue_size} requests "
                              "queued); retry shortly", headers={"Retry-After": "1"})
            self._jobs.append(job)
            self._cond.notify()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except TimeoutError:
            job.abandoned = True
            raise Problem(504, "timeout", f"the model did not answer within {timeout:g} s") from None

    # ------------------------------------------------------------ model thread

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            self._process(batch)

    def _take(self) -> list[_Job]:
        with self._cond:
            while not self._jobs:
                if self._stopping:
                    return []
                self._cond.wait()
            batch = [self._jobs.popleft()]
            size = len(batch[0].records)
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch_size:
                if self._jobs:
                    if size + len(self._jobs[0].records) > self.max_batch_size:
                        break
                    job = self._jobs.popleft()
                    batch.append(job)
                    size += len(job.records)
                    continue
                remaining = deadline - time.monotonic()
                if self.arriving <= 0 or remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
            return batch

    def _process(self, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.abandoned]
        groups: dict[int, list[_Job]] = {}
        for job in live:  # a hot swap can leave jobs of two versions in one batch
            groups.setdefault(id(job.model), []).append(job)
        for jobs in groups.values():
            self._run_group(jobs)

    def _run_group(self, jobs: list[_Job]) -> None:
        model = jobs[0].model
        records = [record for job in jobs for record in job.records]
        self.on_batch(len(records))
        try:
            outputs = model.predict(records)
        except Exception as exc:
            if len(jobs) == 1:
                _deliver(jobs[0], _as_problem(exc))
                return
            for job in jobs:  # find the request that broke the batch; the others succeed
                self._run_group([job])
            return
        start = 0
        for job in jobs:
            _deliver(job, (outputs[start:start + len(job.records)], model))
            start += len(job.records)


def _as_problem(exc: Exception) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ModelmillError):
        return Problem(422, "invalid_record", without_paths(str(exc))[:1000])
    log.error("the model failed on a request", exc_info=exc)
    return Problem(500, "model_error", "the model failed on this request; the server log has the details")


def _deliver(job: _Job, outcome: Outcome | Exception) -> None:
    """Settle the job's future on its event loop (the model thread may not touch it)."""
    def settle() -> None:
        if job.future.done():
            return
        if isinstance(outcome, Exception):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the event loop is closed: nobody is waiting any more
        pass
