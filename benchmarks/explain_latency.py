"""One-record latency of POST /v1/explain beside POST /v1/predict, on the same live server.

    .venv/bin/python benchmarks/explain_latency.py [--bundle B] [--requests 100]

`modelmill serve` in its own process on loopback (the adult `mlp`, trained here unless
--bundle is given), one record a request from the bundle's original test split, 20 warm-up
calls per endpoint, then the timed ones; every explanation's completeness gap is checked
(≤ 0.01). Prints the median, p95, min and max of each, and the Integrated Gradients steps
the explanations took.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compression_common import BIN, machine, test_rows, train, ROOT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        bundle = (args.bundle or train(ROOT / "examples" / "adult" / "adult.yaml", Path(folder) / "runs")).resolve()
        frame = test_rows(bundle, "adult")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen([str(BIN / "modelmill"), "serve", str(bundle), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            _ready(url)
            inputs = [c["name"] for c in httpx.get(f"{url}/v1/model").json()["inputs"]]
            rows = [{k: (None if v != v else v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                    for r in frame[inputs].head(20 + args.requests).to_dict("records")]
            with httpx.Client(base_url=url, timeout=30) as http:
                for path in ("/v1/explain", "/v1/predict"):
                    for row in rows[:20]:
                        answer = http.post(path, json={"instances": [row]})
                        assert answer.status_code == 200, answer.text
                    times, steps = [], Counter()
                    for row in rows[20:]:
                        started = time.perf_counter()
                        answer = http.post(path, json={"instances": [row]})
                        times.append((time.perf_counter() - started) * 1000)
                        assert answer.status_code == 200, answer.text
                        if path == "/v1/explain":
                            explained = answer.json()["explanations"][0]
                            assert explained["gap"] <= 0.01, explained
                            steps[explained["steps"]] += 1
                    times.sort()
                    p95 = times[int(0.95 * (len(times) - 1))]
                    print(f"{path}: {len(times)} requests, median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, "
                          f"min {times[0]:.1f}, max {times[-1]:.1f}"
                          + (f"; steps used {dict(sorted(steps.items()))}" if steps else ""))
        finally:
            server.terminate()
            server.wait(30)


def _ready(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not become ready")


if __name__ == "__main__":
    main()
