"""Start-up of `modelmill serve`: seconds from launching the process to its first ready
answer (GET /readyz 200, the model loaded and warmed), and the process's resident memory
then, and which heavy modules it imported.

    .venv/bin/python benchmarks/serve_startup.py BUNDLE [--repeats 5]

The child runs as `python -m modelmill.cli serve BUNDLE --port P`, so PYTHONPATH picks the
modelmill it runs (an older checkout's src/, for a before/after comparison).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

HEAVY = ["matplotlib", "sklearn", "modelmill.training", "modelmill.api", "modelmill.evaluation", "scipy"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_once(bundle: Path) -> tuple[float, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "modelmill.cli", "serve", str(bundle), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited: {process.stderr.read() if process.stderr else ''}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        return seconds, rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def imported(bundle: Path) -> list[str]:
    probe = ("import sys; from modelmill.serving.server import load_state; from modelmill.serving.app import "
             f"create_app; create_app(load_state({str(bundle)!r}, {{'port': 0}})); "
             f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return list(eval(done.stdout.strip().splitlines()[-1]))  # a list literal printed by the probe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    runs = [start_once(args.bundle) for _ in range(args.repeats)]
    seconds = statistics.median(r[0] for r in runs)
    rss = statistics.median(r[1] for r in runs)
    print(f"# modelmill serve start-up — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"PYTHONPATH={os.environ.get('PYTHONPATH', '')!r}, median of {args.repeats}")
    print(f"seconds to ready: {seconds:.2f} (runs: {', '.join(f'{r[0]:.2f}' for r in runs)})")
    print(f"resident MiB when ready: {rss:.0f}")
    print(f"heavy modules imported: {imported(args.bundle)}")


if __name__ == "__main__":
    main()
