"""Work that does not batch (an explanation, a forecast) off the event loop, one call at a time
on a thread of its own, so that the loop keeps answering (and the batcher's model thread keeps
predicting) meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from modelmill.config.serving import ServingConfig
from modelmill.serving.problem import Problem

T = TypeVar("T")


class _Skipped:
    """What a call returns when its caller had given up before its turn."""


_SKIPPED = _Skipped()


class SerialRunner(Generic[T]):
    """Calls on one thread, in turn. At most ``serving.queue_size`` wait, more get 503 at
    once; an answer not ready within ``serving.timeout_s`` gets 504, and a call whose caller
    has given up by its turn is skipped, so a burst of them costs no work after it.

    Args:
        settings: The served version's settings (queue size, timeout).
        what: What is computed, plural, for messages (``explanations``, ``forecasts``).
        thread: The thread's name.
    """

    def __init__(self, settings: ServingConfig, *, what: str, thread: str) -> None:
        self.settings = settings
        self.what = what
        self.pending = 0  # submitted and not finished; touched by the event loop only
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread)

    async def run(self, work: Callable[[], T]) -> T:
        """``work()``'s result (its exception, a :class:`Problem` as it is); 503, 504 as above."""
        timeout = self.settings.timeout_s
        if self.pending >= self.settings.queue_size:
            raise Problem(503, "overloaded", f"the server is at capacity ({self.pending} {self.what} "
                          "queued); retry shortly", headers={"Retry-After": "1"})
        deadline = time.monotonic() + timeout

        def in_turn() -> T | _Skipped:
            return _SKIPPED if time.monotonic() > deadline else work()

        future = asyncio.get_running_loop().run_in_executor(self._pool, in_turn)
        self.pending += 1
        future.add_done_callback(self._finished)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise Problem(504, "timeout", f"the {self.what} were not ready within {timeout:g} s") from None
        if isinstance(result, _Skipped):  # only when the deadline passed, which wait_for has seen first
            raise Problem(504, "timeout", f"the {self.what} were not ready within {timeout:g} s")
        return result

    def _finished(self, future: asyncio.Future[T | _Skipped]) -> None:
        self.pending -= 1
        if not future.cancelled():
            future.exception()  # retrieved, so that one whose caller has gone is not logged as lost

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
