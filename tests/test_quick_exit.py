"""The console script's quick exit: what a normal exit guarantees still happens (exit status,
exit handlers, Python's and C's buffered output, non-daemon threads finished), in real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PRELUDE = """
import atexit, ctypes, sys, threading, time
from pathlib import Path
from modelmill.quick_exit import exit_quickly
out = Path(sys.argv[1])
atexit.register(lambda: (out / "handler-ran").write_text("yes"))
sys.stdout.write("python line without a newline")  # buffered: stdout is a pipe here
ctypes.CDLL(None).printf(b"|c line without a newline")  # C's stdio buffer, not Python's
"""


BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # output waits in buffers for the exit


def run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + body, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env=BUFFERED)


@pytest.mark.parametrize(("code", "status"), [("None", 0), ("3", 3), ("'went wrong'", 1)])
def test_status_handlers_and_buffered_output_survive(tmp_path: Path, code: str, status: int) -> None:
    done = run_script(tmp_path, f"exit_quickly({code})\nout.joinpath('after-exit').write_text('no')\n")
    assert done.returncode == status
    assert done.stdout == "python line without a newline|c line without a newline"
    assert (tmp_path / "handler-ran").read_text() == "yes"
    assert not (tmp_path / "after-exit").exists()
    assert ("went wrong" in done.stderr) == (status == 1)


def test_a_running_non_daemon_thread_is_waited_for(tmp_path: Path) -> None:
    body = ("threading.Thread(target=lambda: (time.sleep(1.0), out.joinpath('thread-done').write_text('yes')))"
            ".start()\nexit_quickly(4)\n")
    done = run_script(tmp_path, body)
    assert done.returncode == 4
    assert (tmp_path / "thread-done").read_text() == "yes" and (tmp_path / "handler-ran").exists()
    # the normal exit flushes C's buffer before Python's: both whole, in either order
    python, c = "python line without a newline", "|c line without a newline"
    assert done.stdout in (python + c, c + python)


def test_the_console_script_exits_with_the_commands_status(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("modelmill")
    done = subprocess.run([str(script), "train", str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "does not exist" in done.stderr
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "Usage" in shown.stdout and shown.stdout.rstrip().endswith("─╯")


def test_output_that_cannot_be_written_is_no_success(tmp_path: Path) -> None:
    # stdout's reader is gone (as `modelmill … | head` after head ended): the flush fails
    reader, writer = os.pipe()
    os.close(reader)
    script = ("import sys\nfrom modelmill.quick_exit import exit_quickly\n"
              "try:\n    sys.stdout.write('lost')\nexcept BrokenPipeError:\n    pass\nexit_quickly(0)\n")
    done = subprocess.run([sys.executable, "-c", script], stdout=writer, stderr=subprocess.PIPE, text=True,
                          timeout=60, env=BUFFERED)
    os.close(writer)
    assert done.returncode == 120, done.stderr
