"""One user's top 10 from `modelmill serve` (POST /v1/recommend on loopback, one request at a
time over a kept-alive connection) against implicit's ALS ``recommend()`` for one user in process
(the peer's cost without any HTTP), in the same run, on movielens.

    .venv/bin/python benchmarks/recommend_serving.py [--bundle runs/movielens/latest] [--requests 500]

Without --bundle the worked example is trained first (examples/recommend/movielens.yaml). The
users asked for are drawn (seeded) from the bundle's known users; each request leaves out the
user's known items (all 9,066 movies scored).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_latency import free_port, ours, running, train_example  # noqa: E402  (the same server start)


def served_latency(bundle: Path, users: list[str], k: int) -> list[float]:
    """Milliseconds per request, client side, after 50 warm-up requests."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(ours(bundle, port), f"{url}/healthz"), httpx.Client(base_url=url, timeout=30) as client:
        for user in users[:50]:
            client.post("/v1/recommend", json={"user": user, "k": k}).raise_for_status()
        times = []
        for user in users:
            started = time.perf_counter()
            answer = client.post("/v1/recommend", json={"user": user, "k": k})
            times.append((time.perf_counter() - started) * 1e3)
            answer.raise_for_status()
            if len(answer.json()["items"]) != k:
                raise SystemExit(f"user {user}: {len(answer.json()['items'])} items, not {k}")
    return times


def als_latency(bundle: Path, users: list[str], k: int) -> list[float]:
    """implicit's ALS (64 factors) fitted on the bundle's known items, one user's recommend() in
    process (its known items filtered, as ours are): the peer's cost with no HTTP at all."""
    from implicit.als import AlternatingLeastSquares
    from modelmill.bundle import read_bundle
    from modelmill.recommending.predictor import RecommendPredictor

    predictor = RecommendPredictor.from_bundle(read_bundle(bundle))
    known = predictor.known.tocsr().astype(np.float32)
    model = AlternatingLeastSquares(factors=64, iterations=15, random_state=0)
    model.fit(known, show_progress=False)
    codes = {user: code for code, user in enumerate(predictor.user_ids)}
    times = []
    for user in users:
        code = codes[user]
        started = time.perf_counter()
        model.recommend(code, known[code], N=k, filter_already_liked_items=True)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 3), "p90_ms": round(ordered[int(0.9 * len(ordered))], 3),
            "p99_ms": round(ordered[int(0.99 * len(ordered))], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="A recommend bundle (default: train the movielens example).")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        bundle = (args.bundle.resolve() if args.bundle else
                  train_example(Path(workdir), "examples/recommend/movielens.yaml"))
        trained = time.perf_counter() - started
        from modelmill.bundle import read_bundle
        from modelmill.recommending.predictor import RecommendPredictor

        user_ids = RecommendPredictor.from_bundle(read_bundle(bundle)).user_ids
        users = [str(u) for u in np.random.default_rng(0).choice(user_ids, size=args.requests)]
        result = {"machine": platform.processor() or platform.machine(), "requests": args.requests, "k": args.k,
                  "train_s": None if args.bundle else round(trained, 1),
                  "ours_http": summary(served_latency(bundle, users, args.k)),
                  "implicit_als_in_process": summary(als_latency(bundle, users, args.k))}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
