"""Fixed overhead of `modelmill train`: everything but the model's fit (start-up and
imports, reading, cleaning, splitting, fitting the features, evaluation, plots, report,
bundle) on a 3,000-row × 75-column table, for the default `mlp` and for `gbdt`.

    .venv/bin/python benchmarks/fixed_overhead.py [--repeats 3]
    PYTHONPATH=<older checkout>/src .venv/bin/python benchmarks/fixed_overhead.py --models mlp   # before

The table is generated (seed 0): 45 number columns (a third of them log-normal), 30
category columns of 2 to 20 values, a binary target. The config is what `modelmill init`
writes for it, with the model type set. Each run is a separate process, timed from its
launch to its exit; the model's fit is the training loop's own clock (the epochs, or the
boosting rounds, from history.json), so the optimiser's first-use costs count as overhead.
The stages come from the run's train.log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def table(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = 3000
    columns: dict[str, np.ndarray] = {}
    for i in range(45):
        columns[f"n{i}"] = rng.lognormal(1, 1, rows) if i % 3 == 0 else rng.normal(size=rows)
    for i in range(30):
        columns[f"c{i}"] = rng.choice([f"v{j}" for j in range(2 + i % 19)], rows)
    frame = pd.DataFrame(columns)
    score = frame["n1"] + 0.5 * frame["n2"] - 0.3 * np.log1p(frame["n0"]) + (frame["c3"] == "v1") * 0.8
    frame["target"] = np.where(score + rng.normal(scale=0.7, size=rows) > 0.2, "yes", "no")
    frame.to_csv(folder / "table.csv", index=False)
    return folder / "table.csv"


def config(folder: Path, data: Path, model: str) -> Path:
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "init", str(data), "--target", "target"],
                          check=True, capture_output=True, text=True)
    raw = yaml.safe_load(done.stdout)
    raw["model"] = {"type": model}
    raw["name"] = f"table-{model}"
    raw.setdefault("training", {})["progress"] = False
    path = folder / f"{model}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(path: Path, runs: Path) -> dict[str, float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "modelmill.cli", "train", str(path), "--runs", str(runs)], check=True,
                   capture_output=True)
    wall = time.perf_counter() - started
    latest = runs / yaml.safe_load(path.read_text())["name"] / "latest"
    fit = float(json.loads((latest / "bundle" / "history.json").read_text())[-1]["seconds"])
    stages: dict[str, float] = {}
    log = (latest / "train.log").read_text() if (latest / "train.log").is_file() else ""
    for line in re.findall(r"seconds: (.*)", log):
        for part in line.split(", "):
            name, _, value = part.rpartition(" ")
            stages[name] = stages.get(name, 0.0) + float(value)
    return {"wall": wall, "fit": fit, **stages}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="mlp,gbdt")
    args = parser.parse_args()
    print(f"# fixed overhead of modelmill train, 3,000 × 75 — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{platform.machine()}, PYTHONPATH={os.environ.get('PYTHONPATH', '')!r}, median of {args.repeats}")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        data = table(folder)
        for model in args.models.split(","):
            path = config(folder, data, model)
            runs = [run(path, folder / "runs") for _ in range(args.repeats)]
            keys = list(dict.fromkeys(k for r in runs for k in r))
            median = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
            overhead = median["wall"] - median["fit"]
            staged = sum(v for k, v in median.items() if k not in ("wall", "fit"))
            print(f"\n{model}: whole command {median['wall']:.2f} s, model fit {median['fit']:.2f} s, "
                  f"everything else {overhead:.2f} s")
            for key in keys:
                if key not in ("wall", "fit"):
                    print(f"  {key}: {median[key]:.2f} s")
            if staged:
                print(f"  start-up, imports and exit (the rest): {median['wall'] - staged:.2f} s")


if __name__ == "__main__":
    main()
