"""A real PostgreSQL server for the tests: the Debian package's binaries (scripts/test-deps.sh
installs them), a cluster in a temporary folder, run as a non-root user as PostgreSQL
requires (``nobody`` when the tests run as root, as CI does), on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
                   if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields its URL (user postgres, trust authentication, database postgres)."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql; ./test installs them)")
    folder = Path(tempfile.mkdtemp(prefix="modelmill-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "nobody", "--"]
        os.chmod(folder, 0o755)
        shutil.chown(folder, "nobody")
    data, sockets = folder / "data", folder / "sockets"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = lambda *args: subprocess.run(as_user + [str(a) for a in args], check=True,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    try:
        run(binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C")
        run("mkdir", sockets)
        run(binaries / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -F", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run(binaries / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
