"""Shadow mode: what a challenger predicting beside the served model costs the answers.

    apt-get install wrk      # the load generator (C, one thread)
    .venv/bin/python benchmarks/shadow_overhead.py [--bundle B --challenger C] [--seconds 6] [--rounds 6]

One `modelmill serve` with the prediction log on (SQLite, every record kept), its model
folder holding the champion as version 1 and the challenger in `.shadow/challenger/`.
wrk (one thread, a few connections, one record a request) loads the same live server
with shadow mode off and on, the admin API switching between them, in interleaved rounds
(which goes first alternates). Each run reports p50, p95 and p99 latency, requests/s, and
the server process's CPU time per request (from /proc, counted until the shadow has
predicted what the run gave it: the steadiest figure on a shared machine, whose latency
drifts between minutes by more than the effect measured here); the figures are medians
over rounds, and the medians of the rounds' differences. After
each run the script waits until the log holds nothing pending, so that neither mode is
slowed by the other's writing. At the end the shadow's counters (predicted, dropped,
failed) are printed: a shadow that cannot keep up drops records instead of slowing the
answers, and the count says how many.

Without --bundle and --challenger, both are trained on the adult example (2 epochs; a
model's prediction cost does not depend on how long it trained), with different seeds.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_latency import BIN, ROOT, drained, free_port, running  # noqa: E402

TOKEN = "shadow-benchmark-token-0123456789"
DONE = """
done = function(summary, latency, requests)
  io.write(string.format("P50 %d\\nP95 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(95),
                         latency:percentile(99)))
end
"""


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train(workdir: Path, name: str, seed: int) -> Path:
    """The adult example, trained briefly with ``seed``: a bundle."""
    config = yaml.safe_load((ROOT / "examples/adult/adult.yaml").read_text())
    config.setdefault("training", {}).update(epochs=2, seed=seed)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    subprocess.run([str(BIN / "modelmill"), "train", str(path), "--runs", str(workdir / name)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return workdir / name / "adult" / "latest"


def wrk(url: str, body: str, *, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run: requests/s and the p50, p95, p99 latency in ms; any failed request aborts."""
    with tempfile.TemporaryDirectory() as temp:
        script = Path(temp) / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = [[{body}]]\n{DONE}")
        result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                                capture_output=True, text=True, check=True)
    text = result.stdout
    if "Non-2xx" in text or "Socket errors" in text:
        raise SystemExit(f"wrk saw failed requests:\n{text}")
    found = {key: float(value) / 1000 for key, value in re.findall(r"^(P\d+) (\d+)$", text, re.M)}
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    requests = re.search(r"(\d+) requests in", text)
    assert rps and requests and len(found) == 3, text
    return {"rps": float(rps.group(1)), "requests": float(requests.group(1)), "p50_ms": found["P50"],
            "p95_ms": found["P95"], "p99_ms": found["P99"]}


def shadow_counters(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'^modelmill_shadow_records_total\{outcome="(\w+)"\} ([0-9.e+]+)$', text, re.M)}


def settled(url: str, timeout: float = 60) -> None:
    """Wait until the shadow (if on) has predicted what it was given: nothing queued, and its
    count stands still."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        shadow = httpx.get(f"{url}/v1/model").json()["shadow"]
        if shadow is None:
            return
        count = shadow["records"] + shadow["dropped"] + shadow["failed"]
        if shadow["queued"] == 0 and count == last:
            return
        last = count
        time.sleep(0.3)


def switch(url: str, on: bool) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = (httpx.post(f"{url}/v1/admin/shadow", json={"version": "challenger"}, headers=headers, timeout=120)
              if on else httpx.delete(f"{url}/v1/admin/shadow", headers=headers, timeout=60))
    if answer.status_code != 200:
        raise SystemExit(f"the shadow could not be switched {'on' if on else 'off'}: {answer.text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="the champion: a tabular bundle or run")
    parser.add_argument("--challenger", type=Path, help="the challenger, with the champion's inputs and target")
    parser.add_argument("--seconds", type=int, default=6, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--connections", type=int, default=4, help="concurrent clients")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed. Fix: apt-get install wrk")
    if (args.bundle is None) != (args.challenger is None):
        raise SystemExit("give both --bundle and --challenger, or neither (both are then trained)")
    workdir = Path(tempfile.mkdtemp(prefix="modelmill-shadow-bench-"))
    champion = args.bundle or train(workdir, "champion", seed=0)
    challenger = args.challenger or train(workdir, "challenger", seed=1)
    models = workdir / "models"
    shutil.copytree(champion.resolve(), models / "1")
    shutil.copytree(challenger.resolve(), models / ".shadow" / "challenger")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "modelmill"), "serve", str(models), "--port", str(port),
               "--log", f"sqlite:///{workdir / 'monitor.db'}"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load before: "
          f"{os.getloadavg()[0]:.2f}; champion {champion}, challenger {challenger}", flush=True)
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with running(command, f"{url}/healthz", {"MODELMILL_ADMIN_TOKEN": TOKEN}) as server:
        record = httpx.get(f"{url}/v1/model").json()["example"]["instances"][0]
        body = httpx.Request("POST", url, json={"instances": [record]}).content.decode()
        predict = f"{url}/v1/predict"
        for on in (True, False):  # warm-up of both modes
            switch(url, on)
            wrk(predict, body, connections=args.connections, seconds=3)
            settled(url)
            drained(url)
        for round_ in range(args.rounds):
            order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
            results = {}
            for mode in order:
                switch(url, mode == "on")
                before = cpu_seconds(server.pid)
                results[mode] = wrk(predict, body, connections=args.connections, seconds=args.seconds)
                settled(url)
                results[mode]["cpu_ms"] = (cpu_seconds(server.pid) - before) * 1000 / results[mode]["requests"]
                drained(url)
                runs[mode].append(results[mode])
            print(f"  round {round_ + 1}: p50 off {results['off']['p50_ms']:.3f} ms, on {results['on']['p50_ms']:.3f} "
                  f"ms; p95 off {results['off']['p95_ms']:.3f} ms, on {results['on']['p95_ms']:.3f} ms; "
                  f"{results['off']['rps']:.0f} / {results['on']['rps']:.0f} req/s; CPU "
                  f"{results['off']['cpu_ms']:.3f} / {results['on']['cpu_ms']:.3f} ms a request", flush=True)
        time.sleep(1)
        counters = shadow_counters(url)
    shutil.rmtree(workdir, ignore_errors=True)

    def median(mode: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[mode])

    pairs = list(zip(runs["off"], runs["on"]))
    print(f"shadow mode, {args.rounds} interleaved rounds of {args.seconds} s at {args.connections} connections "
          f"(medians); the shadow predicted {counters.get('predicted', 0):.0f} records, dropped "
          f"{counters.get('dropped', 0):.0f}, failed {counters.get('failed', 0):.0f}")
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        print(f"  {key[:3]}: off {median('off', key):.3f} ms, on {median('on', key):.3f} ms, difference "
              f"{median('on', key) - median('off', key):+.3f} ms, ratio {median('on', key) / median('off', key):.2f}x "
              f"(median of the rounds' differences {statistics.median(b[key] - a[key] for a, b in pairs):+.3f} ms)")
    print(f"  requests/s: off {median('off', 'rps'):.0f}, on {median('on', 'rps'):.0f}, ratio "
          f"{median('on', 'rps') / median('off', 'rps'):.3f}")
    print(f"  server CPU a request: off {median('off', 'cpu_ms'):.3f} ms, on {median('on', 'cpu_ms'):.3f} ms, "
          f"difference {median('on', 'cpu_ms') - median('off', 'cpu_ms'):+.3f} ms (median of the rounds' "
          f"differences {statistics.median(b['cpu_ms'] - a['cpu_ms'] for a, b in pairs):+.3f} ms)")


if __name__ == "__main__":
    main()
