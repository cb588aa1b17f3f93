"""Ctrl-C during a study, raised outside the study's database calls.

A KeyboardInterrupt raised inside SQLAlchemy (a trial reporting its epoch, say) can leave a
connection holding SQLite's lock: the interrupted trial's own clean-up writes (its retry
queued, its state set to failed) and Optuna's heartbeat thread then wait on that lock until
the database timeout, and the command hangs instead of stopping. Within this block, a
Ctrl-C that arrives inside the database code is held back and raised as soon as the main
thread is out of it (checked every 50 ms); a second Ctrl-C is raised at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

DATABASE_MODULES = ("sqlalchemy", "optuna.storages", "sqlite3", "psycopg", "psycopg2")
RECHECK_SECONDS = 0.05


def in_database(frame: FrameType | None) -> bool:
    """Whether the interrupted code is (called from) the database layer."""
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.startswith(DATABASE_MODULES):
            return True
        frame = frame.f_back
    return False


class _Deferring:
    def __init__(self) -> None:
        self.pending = False

    def on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.pending or not in_database(frame):  # a second Ctrl-C, or a safe place: now
            self.pending = False
            raise KeyboardInterrupt
        self.pending = True
        signal.setitimer(signal.ITIMER_REAL, RECHECK_SECONDS)

    def on_recheck(self, signum: int, frame: FrameType | None) -> None:
        if not self.pending:
            return
        if in_database(frame):
            signal.setitimer(signal.ITIMER_REAL, RECHECK_SECONDS)
            return
        self.pending = False
        raise KeyboardInterrupt


@contextmanager
def interrupts_outside_database() -> Iterator[None]:
    """Ctrl-C held back while the main thread is in database code (see the module's docstring);
    nothing changes off the main thread, where Python delivers no signal."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield  # off the main thread, or a platform without interval timers (Windows): as it was
        return
    deferring = _Deferring()
    previous: list[Any] = [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)]
    if previous[0] is not signal.default_int_handler:  # SIGINT ignored or handled by the caller: left alone
        yield
        return
    signal.signal(signal.SIGINT, deferring.on_interrupt)
    signal.signal(signal.SIGALRM, deferring.on_recheck)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGALRM, previous[1])
