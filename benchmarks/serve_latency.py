"""Serving: `modelmill serve` against a minimal FastAPI app calling the same model, both
under the same uvicorn (httptools, uvloop, one worker, no access log), loaded by wrk on
loopback in the same run.

    apt-get install wrk      # the load generator (C, one thread)
    .venv/bin/python benchmarks/serve_latency.py [--bundle runs/adult/latest] [--seconds 15]

1. Latency at concurrency 1 (one record a request): p50 and p99 of ours and of the peer,
   in alternating rounds; the figure is the median over rounds.
2. Throughput at concurrency 64 (one record a request): ours with adaptive batching
   against ours with batching off (--max-batch-size 1).
3. With --log-overhead: the cost of the prediction log. Ours with logging off and with
   logging on (SQLite, every record kept), side by side, wrk alternating between them in
   interleaved rounds (which goes first alternates): p50 at concurrency 1 and requests/s
   at concurrency 64; medians over rounds. At the end the log's counters are checked
   (served = logged + sampled_out + dropped + pending). --only-log-overhead skips 1 and 2.

Without --bundle the adult example is trained first (examples/adult/adult.yaml).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(command: list[str], url: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """The server, ready at ``url``; its process (for its CPU time, say)."""
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{command[0]} exited: {process.stderr.read() if process.stderr else ''}")
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{' '.join(command)} did not start") from None
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(60)


def wrk(url: str, body: bytes, *, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run: requests/s, p50 and p99 in ms; any error or non-200 answer aborts."""
    with tempfile.TemporaryDirectory() as temp:
        script = Path(temp) / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = [[{body.decode()}]]\n")
        result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(script),
                                 url], capture_output=True, text=True, check=True)
    text = result.stdout
    if "Non-2xx" in text or "Socket errors" in text:
        raise SystemExit(f"wrk saw failed requests:\n{text}")

    def percentile(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+([0-9.]+)(us|ms|s)\s*$", text, re.M)
        assert match, text
        return float(match.group(1)) * UNITS[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    assert rps, text
    return {"rps": float(rps.group(1)), "p50_ms": percentile("50"), "p99_ms": percentile("99")}


def train_example(workdir: Path, example: str = "examples/adult/adult.yaml") -> Path:
    """The worked example trained into ``workdir``; its bundle (the run's name is the file's stem)."""
    subprocess.run([str(BIN / "modelmill"), "train", str(ROOT / example), "--runs", str(workdir)], check=True,
                   stdout=subprocess.DEVNULL)
    return workdir / Path(example).stem / "latest"


def ours(bundle: Path, port: int, *extra: str) -> list[str]:
    return [str(BIN / "modelmill"), "serve", str(bundle), "--port", str(port), *extra]


def peer(port: int) -> list[str]:
    return [str(BIN / "uvicorn"), "benchmarks.minimal_fastapi_app:app", "--port", str(port), "--no-access-log",
            "--log-level", "warning", "--http", "httptools", "--loop", "uvloop"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="a tabular bundle or run (default: train the adult example)")
    parser.add_argument("--seconds", type=int, default=15, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating latency rounds")
    parser.add_argument("--log-overhead", action="store_true", help="also measure the prediction log's cost")
    parser.add_argument("--only-log-overhead", action="store_true", help="measure only the prediction log's cost")
    parser.add_argument("--log-rounds", type=int, default=5, help="interleaved rounds of the log measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed. Fix: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="modelmill-serve-bench-"))
    bundle = (args.bundle or train_example(workdir)).resolve()
    port = free_port()
    with running(ours(bundle, port), f"http://127.0.0.1:{port}/healthz"):
        record = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()["example"]["instances"][0]
    body = json.dumps({"instances": [record]}).encode()
    peer_env = {"MODELMILL_BUNDLE": str(bundle), "PYTHONPATH": str(ROOT)}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; bundle {bundle}")
    if args.only_log_overhead:
        log_overhead(bundle, body, workdir, rounds=args.log_rounds, seconds=args.seconds)
        shutil.rmtree(workdir, ignore_errors=True)
        return

    latency: dict[str, list[dict[str, float]]] = {"modelmill": [], "minimal FastAPI": []}
    for _ in range(args.rounds):
        port = free_port()
        with running(ours(bundle, port), f"http://127.0.0.1:{port}/healthz"):
            url = f"http://127.0.0.1:{port}/v1/predict"
            wrk(url, body, connections=1, seconds=3)  # warm-up
            latency["modelmill"].append(wrk(url, body, connections=1, seconds=args.seconds))
        port = free_port()
        with running(peer(port), f"http://127.0.0.1:{port}/docs", peer_env):
            url = f"http://127.0.0.1:{port}/predict"
            wrk(url, body, connections=1, seconds=3)
            latency["minimal FastAPI"].append(wrk(url, body, connections=1, seconds=args.seconds))

    throughput: dict[str, dict[str, float]] = {}
    for name, extra in (("batching on", ()), ("batching off", ("--max-batch-size", "1"))):
        port = free_port()
        with running(ours(bundle, port, *extra), f"http://127.0.0.1:{port}/healthz"):
            url = f"http://127.0.0.1:{port}/v1/predict"
            wrk(url, body, connections=64, seconds=3)
            throughput[name] = wrk(url, body, connections=64, seconds=args.seconds)

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in latency[name])

    print("concurrency 1, one record a request (median over rounds):")
    for name in latency:
        print(f"  {name:16s} p50 {median(name, 'p50_ms'):.3f} ms  p99 {median(name, 'p99_ms'):.3f} ms  "
              f"{median(name, 'rps'):.0f} req/s   rounds: "
              + ", ".join(f"{r['p50_ms']:.3f}/{r['p99_ms']:.3f}" for r in latency[name]))
    for key in ("p50_ms", "p99_ms"):
        print(f"  ratio {key[:3]}: {median('modelmill', key) / median('minimal FastAPI', key):.2f}x")
    print("concurrency 64, one record a request:")
    for name, run in throughput.items():
        print(f"  {name:13s} {run['rps']:.0f} req/s  p50 {run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms")
    print(f"  batching speed-up: {throughput['batching on']['rps'] / throughput['batching off']['rps']:.2f}x")
    if args.log_overhead:
        log_overhead(bundle, body, workdir, rounds=args.log_rounds, seconds=args.seconds)
    shutil.rmtree(workdir, ignore_errors=True)


def log_counters(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    found = {m.group(1): float(m.group(2)) for m in
             re.finditer(r'^modelmill_log_records_total\{outcome="(\w+)"\} ([0-9.e+]+)$', text, re.M)}
    pending = re.search(r"^modelmill_log_pending ([0-9.e+]+)$", text, re.M)
    found["pending"] = float(pending.group(1)) if pending else 0.0
    return found


def drained(url: str, timeout: float = 60) -> None:
    """Wait until the log holds no record in memory or in its spool."""
    deadline = time.monotonic() + timeout
    while log_counters(url).get("pending", 0.0) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)


def log_overhead(bundle: Path, body: bytes, workdir: Path, *, rounds: int, seconds: int) -> None:
    """Logging off against logging on: both servers run side by side (one idles while the
    other is measured) and wrk alternates between them, so that both see the same machine
    (a shared virtual machine drifts by more than the effect measured here). Each round
    measures both, in alternating order; the figures are medians over rounds, and the
    median of the per-round differences and ratios."""
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    ports = {"off": free_port(), "on": free_port()}
    commands = {"off": ours(bundle, ports["off"]),
                "on": ours(bundle, ports["on"], "--log", f"sqlite:///{workdir / 'monitor.db'}")}
    with running(commands["off"], f"http://127.0.0.1:{ports['off']}/healthz"), \
            running(commands["on"], f"http://127.0.0.1:{ports['on']}/healthz"):
        urls = {mode: f"http://127.0.0.1:{port}/v1/predict" for mode, port in ports.items()}
        for mode in ("off", "on"):  # warm-up of both at both loads
            wrk(urls[mode], body, connections=1, seconds=3)
            wrk(urls[mode], body, connections=64, seconds=3)
        for round_ in range(rounds):
            order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
            results: dict[str, dict[str, float]] = {mode: {} for mode in order}
            for connections in (1, 64):
                for mode in order:
                    run = wrk(urls[mode], body, connections=connections, seconds=seconds)
                    if mode == "on":  # the log's writing of this run is not left to slow the next one
                        drained(f"http://127.0.0.1:{ports['on']}")
                    if connections == 1:
                        results[mode].update(p50_ms=run["p50_ms"], p99_ms=run["p99_ms"])
                    else:
                        results[mode]["rps64"] = run["rps"]
            for mode in order:
                runs[mode].append(results[mode])
            print(f"  round {round_ + 1}: p50 off {results['off']['p50_ms']:.3f} ms, on {results['on']['p50_ms']:.3f} ms;"
                  f" c64 off {results['off']['rps64']:.0f} req/s, on {results['on']['rps64']:.0f} req/s", flush=True)
        time.sleep(3)
        counters = log_counters(f"http://127.0.0.1:{ports['on']}")
    accounted = sum(counters.get(k, 0.0) for k in ("logged", "sampled_out", "dropped", "pending"))
    if accounted != counters.get("served"):
        raise SystemExit(f"the log's counters do not add up: {counters}")

    def median(mode: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[mode])

    pairs = list(zip(runs["off"], runs["on"]))
    print(f"prediction log, {rounds} interleaved rounds of {seconds} s (medians); the log served "
          f"{counters.get('served', 0):.0f} records: logged {counters.get('logged', 0):.0f}, dropped "
          f"{counters.get('dropped', 0):.0f}, pending {counters.get('pending', 0):.0f}")
    print(f"  concurrency 1 p50: off {median('off', 'p50_ms'):.3f} ms, on {median('on', 'p50_ms'):.3f} ms, "
          f"difference {median('on', 'p50_ms') - median('off', 'p50_ms'):+.3f} ms (median of the rounds' "
          f"differences {statistics.median(b['p50_ms'] - a['p50_ms'] for a, b in pairs):+.3f} ms)")
    print(f"  concurrency 64: off {median('off', 'rps64'):.0f} req/s, on {median('on', 'rps64'):.0f} req/s, "
          f"ratio {median('on', 'rps64') / median('off', 'rps64'):.3f} (median of the rounds' ratios "
          f"{statistics.median(b['rps64'] / a['rps64'] for a, b in pairs):.3f})")


if __name__ == "__main__":
    main()
