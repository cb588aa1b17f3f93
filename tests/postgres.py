"""A real PostgreSQL server for the tests: the Debian package's binaries (scripts/test-deps.sh
installs them), a cluster in a temporary folder, run as a non-root user as PostgreSQL
requires (``nobody`` when the tests run as root, as CI does), on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
                   if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else None


class PostgresServer:
    """A running cluster that a test may stop and start again (the store going away)."""

    def __init__(self, binaries: Path, folder: Path, as_user: list[str], port: int) -> None:
        self.binaries, self.folder, self.as_user, self.port = binaries, folder, as_user, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def run(self, *args: object) -> None:
        subprocess.run(self.as_user + [str(a) for a in args], check=True, capture_output=True, text=True,
                       timeout=120)

    def start(self) -> None:
        data = self.folder / "data"
        for attempt in range(3):  # a restart right after an immediate stop may find the last one finishing
            try:
                # -t: on a loaded machine the recovery after an immediate stop can pass pg_ctl's 60 s
                self.run(self.binaries / "pg_ctl", "-D", data, "-l", self.folder / "server.log", "-w", "-t", "110",
                         "-o", f"-p {self.port} -k {self.folder / 'sockets'} -c listen_addresses=127.0.0.1 -F",
                         "start")
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if self.running():  # pg_ctl gave up waiting, but the server came up after all
                    return
                if attempt == 2:
                    log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{log}") from None
                time.sleep(1)

    def running(self) -> bool:
        """Whether the server is up and accepts connections (pg_isready)."""
        ready = subprocess.run(self.as_user + [str(self.binaries / "pg_isready"), "-h", "127.0.0.1", "-p",
                                               str(self.port), "-t", "10"], capture_output=True, timeout=60)
        return ready.returncode == 0

    def stop(self) -> None:
        """Stop at once, as a crash or a failover would (connections are cut)."""
        if (self.folder / "data" / "postmaster.pid").exists():
            self.run(self.binaries / "pg_ctl", "-D", self.folder / "data", "-m", "immediate", "-w", "stop")


@contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    """A running server (user postgres, trust authentication, database postgres)."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql; ./test installs them)")
    folder = Path(tempfile.mkdtemp(prefix="modelmill-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "nobody", "--"]
        os.chmod(folder, 0o755)
        shutil.chown(folder, "nobody")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = PostgresServer(binaries, folder, as_user, port)
    try:
        server.run(binaries / "initdb", "-D", folder / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C")
        server.run("mkdir", folder / "sockets")
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields its URL."""
    with postgres_cluster() as server:
        yield server.url
