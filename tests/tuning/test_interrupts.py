"""Ctrl-C during a study: held back while the main thread is in database code, raised as soon
as it is out (or at once on a second Ctrl-C, or outside database code)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from modelmill.tuning.interrupts import interrupts_outside_database


def as_database_code(body: Callable[[], Any]) -> Any:
    """Run ``body`` from a frame whose module is named like SQLAlchemy's."""
    namespace: dict[str, Any] = {"__name__": "sqlalchemy.engine.fake", "body": body}
    exec("def call():\n    return body()\n", namespace)
    return namespace["call"]()


def busy(seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


@pytest.fixture(autouse=True)
def _ctrl_c_as_in_a_terminal() -> Any:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a test worker may ignore it
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_inside_database_code_waits_until_it_returns() -> None:
    returned: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts_outside_database():
        def write() -> None:
            os.kill(os.getpid(), signal.SIGINT)
            busy(0.3)  # the handler has run by now, held back: no KeyboardInterrupt here
            returned.append("write finished")

        as_database_code(write)
        busy(2.0)  # out of the database code: raised within a recheck
    assert returned == ["write finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_outside_database_code_and_a_second_interrupt_raise_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), interrupts_outside_database():
        os.kill(os.getpid(), signal.SIGINT)
        busy(2.0)
    assert time.monotonic() - started < 1.0
    reached: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts_outside_database():
        def stuck() -> None:
            os.kill(os.getpid(), signal.SIGINT)
            busy(0.2)
            reached.append("held back")
            os.kill(os.getpid(), signal.SIGINT)  # the user presses again
            busy(2.0)
            reached.append("not reached")

        as_database_code(stuck)
    assert reached == ["held back"]


def test_a_held_back_interrupt_is_raised_when_the_block_ends_first() -> None:
    after: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_outside_database():
            as_database_code(lambda: os.kill(os.getpid(), signal.SIGINT))  # held back, then the block ends at once
        after.append("not reached")
    assert after == []


def test_other_signals_and_timers_are_left_alone() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt), interrupts_outside_database():
            def write() -> None:
                os.kill(os.getpid(), signal.SIGINT)
                busy(0.3)

            as_database_code(write)
            busy(2.0)
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0 or fired  # the caller's timer still runs
        busy(0.6)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
