"""Ctrl-C during a study, raised outside the study's database calls.

A KeyboardInterrupt raised inside SQLAlchemy (a trial reporting its epoch, say) can leave a
connection holding SQLite's lock: the interrupted trial's own clean-up writes (its retry
queued, its state set to failed) and Optuna's heartbeat thread then wait on that lock until
the database timeout, and the command hangs instead of stopping. Within this block, a
Ctrl-C that arrives inside the database code is held back and raised as soon as the main
thread is out of it (checked every 50 ms, or when the block ends); a second Ctrl-C is raised at once.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

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
    """The SIGINT handler, and a watcher thread that hands a held-back Ctrl-C back to the main
    thread (``interrupt_main``) once it has left the database code (no timer signal: those
    belong to the caller, pytest-timeout's for one)."""

    def __init__(self) -> None:
        self.pending = False  # a Ctrl-C is held back
        self.handing_back = False  # the next SIGINT is the watcher's, not the user's
        self.main = threading.main_thread().ident

    def on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.handing_back:
            self.handing_back = False
            if in_database(frame):  # back in the database by the time the handler ran: wait on
                self._watch()
                return
        elif not self.pending and in_database(frame):
            self.pending = True
            self._watch()
            return
        self.pending = False  # a safe place, or the user's second Ctrl-C: now
        raise KeyboardInterrupt

    def _watch(self) -> None:
        threading.Thread(target=self._hand_back, name="modelmill-deferred-interrupt", daemon=True).start()

    def _hand_back(self) -> None:
        while self.pending:
            time.sleep(RECHECK_SECONDS)
            if self.pending and not in_database(sys._current_frames().get(self.main or 0)):
                self.handing_back = True
                _thread.interrupt_main(signal.SIGINT)
                return


@contextmanager
def interrupts_outside_database() -> Iterator[None]:
    """Ctrl-C held back while the main thread is in database code (see the module's docstring);
    nothing changes off the main thread, where Python delivers no signal, or where SIGINT is not
    Python's default handler (ignored, or the caller's own)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    deferring = _Deferring()
    signal.signal(signal.SIGINT, deferring.on_interrupt)
    try:
        yield
    finally:
        try:
            held, deferring.pending = deferring.pending, False  # the watcher hands nothing back from now on
            in_flight = deferring.handing_back  # handed back already: raised by whichever handler it meets
        finally:  # put back even when the handed-back Ctrl-C is raised right here
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if held and not in_flight and sys.exc_info()[0] is None:  # the block ended first: raised now
            raise KeyboardInterrupt
