"""The command line in the tests: ``cli`` runs it in its own process (the real command,
as a user runs it); ``run_main`` and ``cli_here`` through its entry point in the test's process
(the same command's code, without an interpreter to start and import everything again), where a
test is about what a command does rather than about the process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelmill.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def run_main(args: list[str]) -> int:
    """``modelmill ARGS`` through ``main`` in this process: its exit code (2: a user's error)."""
    from modelmill.cli import main

    saved = sys.argv
    logger = logging.getLogger("modelmill")
    handlers, level = list(logger.handlers), logger.level
    sys.argv = ["modelmill", *args]
    try:
        main()
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        sys.argv = saved
        logger.handlers[:] = handlers  # main() adds its console handler: not for the tests after this one
        logger.setLevel(level)
    return 0


def cli_here(*args: str, cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``run_main`` from ``cwd`` with ``env`` set: the exit code, stdout as written, and stderr with
    rich's line wrapping undone."""
    monkeypatch.chdir(cwd)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = run_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def exit_and_said(*args: str, cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                  own_process: bool, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The command's exit code and its stderr (rich's wrapping undone), run in its own process
    (``own_process``) or through the entry point in this one."""
    if own_process:
        result = cli(*args, cwd=cwd, env=env)
        return result.returncode, " ".join(result.stderr.split())
    code, _, said = cli_here(*args, cwd=cwd, capsys=capsys, monkeypatch=monkeypatch, env=env)
    return code, said
