"""The closed loop on real data: what `modelmill retrain`'s promotion rule deploys, against the
loop teams glue by hand (retrain on a schedule, deploy whatever trained: "always promote"),
in the same run, on three situations; then a promotion under load against the live service.

    .venv/bin/python benchmarks/closed_loop.py [--repeats 5]

Adult: the champion (an MLP, the example config) is trained on 6,000 people under 35. Each
repeat logs 1,500 labelled records of a stream and runs `retrain` (held back: the newest 30%):

- shift: the stream is people of 35 and over, on whom the champion extrapolates badly;
- no shift: the stream is more people under 35 (a challenger is as good as the champion);
- damaged: people of 35 and over, but the original data's training rows have six columns
  shuffled (an upstream bug): the challenger is worse on the original test split.

The deployed model (ours: the challenger when promoted, else the champion; always promote:
the challenger) is scored on fresh rows of the stream (3,000 never logged) and on the
original test split. Then, with the live service (`modelmill serve`, SQLite log) and two
clients sending one record at a time, `modelmill retrain --serve` promotes a challenger:
requests served and failed, and latency percentiles before and during the retraining.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from modelmill.api import load
from modelmill.data.datasets import fetch_dataset
from modelmill.retraining import retrain

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.monitoring.filling import fill_log  # noqa: E402
from tests.monitoring.service import start_server, stop_server  # noqa: E402
from tests.retraining.conftest import DAMAGED, INPUTS, write_config  # noqa: E402


@dataclass
class Outcome:
    promoted: list[bool] = field(default_factory=list)
    ours_stream: list[float] = field(default_factory=list)
    naive_stream: list[float] = field(default_factory=list)
    ours_test: list[float] = field(default_factory=list)
    naive_test: list[float] = field(default_factory=list)
    gains: list[str] = field(default_factory=list)


def auc(bundle: Path, frame: pd.DataFrame) -> float:
    predictions = load(bundle).predict(frame[INPUTS])
    return float(roc_auc_score(frame["income"].eq(">50K"), predictions["income_probability_>50K"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    adult = pd.read_csv(fetch_dataset("adult"))
    young_all = adult[adult["age"] < 35].sample(frac=1, random_state=0).reset_index(drop=True)
    old_all = adult[adult["age"] >= 35].sample(frac=1, random_state=0).reset_index(drop=True)
    young, more_young = young_all.iloc[:6000], young_all.iloc[6000:]
    work = Path(tempfile.mkdtemp(prefix="closed-loop-"))
    try:
        young.to_csv(work / "young.csv", index=False)
        write_config(work, "adult.yaml", "young.csv")
        from modelmill.api import Pipeline
        from modelmill.bundle import read_bundle
        from modelmill.data.split import SplitRecord

        Pipeline(work / "adult.yaml").fit().save(work / "models" / "1")
        record = SplitRecord.from_json(read_bundle(work / "models" / "1").split() or {})
        positions = record.test_positions(young)
        original_test = young.iloc[positions]
        rest = np.setdiff1d(np.arange(len(young)), positions)
        damaged = young.copy()
        rng = np.random.default_rng(1)
        for column in DAMAGED:
            damaged.loc[rest, column] = damaged.loc[rng.permutation(rest), column].to_numpy()
        damaged.to_csv(work / "damaged.csv", index=False)
        write_config(work, "damaged.yaml", "damaged.csv")
        champion = work / "models" / "1"
        streams = {"shift": (old_all, "adult.yaml"), "no shift": (more_young, "adult.yaml"),
                   "damaged": (old_all, "damaged.yaml")}
        results = {}
        for name, (stream, config) in streams.items():
            outcome = Outcome()
            fresh = stream.iloc[-3000:]
            for repeat in range(args.repeats):
                folder = work / f"{name}-{repeat}"
                shutil.copytree(work / "models", folder / "models")
                url = f"sqlite:///{folder / 'monitor.db'}"
                logged = stream.iloc[:-3000].sample(n=1500, random_state=repeat)
                fill_log(url, folder / "models", logged, labels=True, start=time.time(), step=0.001)
                decision = retrain(work / config, log_url=url, versions=folder / "models", runs=folder / "runs",
                                   say=lambda _: None)
                assert decision.bundle is not None
                promoted = decision.outcome == "promoted"
                deployed = decision.bundle if promoted else champion
                outcome.promoted.append(promoted)
                outcome.ours_stream.append(auc(deployed, fresh))
                outcome.naive_stream.append(auc(decision.bundle, fresh))
                outcome.ours_test.append(auc(deployed, original_test))
                outcome.naive_test.append(auc(decision.bundle, original_test))
                recent = decision.figures["recent"]
                outcome.gains.append(f"{recent['gain']:+.3f} [{recent['low']:+.3f}, {recent['high']:+.3f}]")
                print(name, repeat, decision.outcome, outcome.gains[-1], flush=True)
            results[name] = outcome
        champion_scores = {name: auc(champion, stream.iloc[-3000:]) for name, (stream, _) in streams.items()}
        load_figures = under_load(work, old_all)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args.repeats, results, champion_scores, load_figures)


class Clients:
    """Two clients sending one record a request: status and latency of each answer."""

    def __init__(self, url: str, rows: list[dict[str, object]]) -> None:
        self.url, self.rows = url, rows
        self.answers: list[tuple[float, int, float]] = []  # (sent at, status, seconds)
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(2)]

    def start(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, n: int) -> None:
        i = n
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    answer = http.post("/v1/predict", json={"instances": [self.rows[i % len(self.rows)]]})
                    self.answers.append((time.monotonic(), answer.status_code, time.perf_counter() - started))
                except httpx.HTTPError:
                    self.errors += 1
                i += 2
                self._stop.wait(0.01)


def under_load(work: Path, stream: pd.DataFrame) -> dict[str, float]:
    folder = work / "live"
    shutil.copytree(work / "models", folder / "models")
    url = f"sqlite:///{folder / 'monitor.db'}"
    token = "benchmark-admin-token"
    env = {"MODELMILL_ADMIN_TOKEN": token, "MODELMILL_FEEDBACK_TOKEN": "benchmark-feedback-token"}
    server = start_server(folder / "models", "--log", url, env=env)
    try:
        rows = json.loads(stream.iloc[:1500][INPUTS].to_json(orient="records"))
        labels = []
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for start in range(0, 1500, 50):
                http.post("/v1/predict", json={"instances": rows[start:start + 50]},
                          headers={"X-Request-ID": f"b{start:08d}"}).raise_for_status()
                labels += [{"request_id": f"b{start:08d}", "row": n, "value": v}
                           for n, v in enumerate(stream["income"].iloc[start:start + 50])]
            http.post("/v1/feedback", json={"labels": labels},
                      headers={"Authorization": "Bearer benchmark-feedback-token"}).raise_for_status()
        time.sleep(3)  # the log writer's flush
        clients = Clients(server.url, json.loads(stream.iloc[1500:3000][INPUTS].to_json(orient="records"))).start()
        time.sleep(10)
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "modelmill.cli", "retrain", str(work / "adult.yaml"), "--log", url,
                               "--versions", str(folder / "models"), "--serve", server.url, "--runs",
                               str(folder / "runs")], capture_output=True, text=True, env={**os.environ, **env})
        ended = time.monotonic()
        time.sleep(5)
        clients.stop()
        version = httpx.get(f"{server.url}/v1/model").json()["version"]
    finally:
        stop_server(server)
    assert done.returncode == 0, done.stderr

    def latency(part: list[tuple[float, int, float]], q: float) -> float:
        return float(np.percentile([a[2] for a in part], q) * 1000)

    before = [a for a in clients.answers if a[0] < began]
    during = [a for a in clients.answers if began <= a[0] <= ended]
    return {"served": len(clients.answers), "failed": clients.errors + sum(a[1] != 200 for a in clients.answers),
            "seconds": ended - began, "version": float(version), "p50_before": latency(before, 50),
            "p99_before": latency(before, 99), "p50_during": latency(during, 50), "p99_during": latency(during, 99)}


def report(repeats: int, results: dict[str, Outcome], champion: dict[str, float],
           load_figures: dict[str, float]) -> None:
    print("\n## The closed loop: the promotion rule against \"always promote\"\n")
    print(f"{date.today().isoformat()}, {platform.processor() or platform.machine()}, "
          f"`.venv/bin/python benchmarks/closed_loop.py --repeats {repeats}`\n")
    print("| stream | promoted (ours) | gain on held-back [95% interval], per repeat | champion ROC-AUC on fresh "
          "stream rows | deployed on fresh stream rows: ours / always promote | on the original test split: "
          "ours / always promote |")
    print("|---|---|---|---|---|---|")
    for name, outcome in results.items():
        print(f"| {name} | {sum(outcome.promoted)} of {repeats} | {'; '.join(outcome.gains)} | {champion[name]:.4f} | "
              f"{np.mean(outcome.ours_stream):.4f} / {np.mean(outcome.naive_stream):.4f} | "
              f"{np.mean(outcome.ours_test):.4f} / {np.mean(outcome.naive_test):.4f} |")
    f = load_figures
    print(f"\nUnder load: {f['served']:.0f} requests answered, {f['failed']:.0f} failed; the retraining took "
          f"{f['seconds']:.1f} s and promoted version {f['version']:.0f}; p50/p99 latency "
          f"{f['p50_before']:.1f}/{f['p99_before']:.1f} ms before, {f['p50_during']:.1f}/{f['p99_during']:.1f} ms "
          "during the retraining (on the same 2 cores).")


if __name__ == "__main__":
    main()
