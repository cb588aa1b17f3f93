"""Ending the command-line process without tearing the interpreter down object by object.

Once torch and its compiler stack are loaded (every torch optimiser loads it), CPython's
finalisation — clearing every module, deallocating every object — takes about a second on a
2-core machine (1.2–1.3 s measured after a `modelmill train`), after the command's work is done
and its output written. The console script ends instead by doing what a normal exit does that
can matter — the exit handlers run (logging's flush, temporary folders' finalizers, libraries'
shutdown hooks such as Ray's or MLflow's), Python's and C's output buffers flushed — and then
``os._exit``. While a non-daemon thread still runs, the normal exit is taken, as it joins it.

Only the process's entry point calls this: a test or a notebook calling ``cli.main`` keeps its
interpreter.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import sys
import threading
from typing import NoReturn


def exit_quickly(code: str | int | None) -> NoReturn:
    """End the process with ``code`` as ``sys.exit(code)`` would (None: 0; a number: itself;
    anything else: printed to stderr, status 1), skipping the interpreter's finalisation."""
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if run_handlers is None or others:
        sys.exit(code)  # the normal exit: it joins those threads (or this Python lacks the hook)
    status = _status(code)
    run_handlers()
    for stream in dict.fromkeys((sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # output lost (a closed pipe, a full disk): not a success
            status = status or 120  # what CPython's own exit answers when its final flush fails
    _flush_c_streams()
    os._exit(status)


def _status(code: str | int | None) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except (OSError, ValueError):
        pass
    return 1


def _flush_c_streams() -> None:
    """C's stdio buffers (what a native library printed through them); ``os._exit`` drops them."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to load by that name here
        pass
