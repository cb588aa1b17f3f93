"""What MLflow tracking adds to `modelmill train` of adult, against a local MLflow tracking
server (SQLite store, local artefact root) on loopback, for the default `mlp` and for `gbdt`.

    .venv/bin/python benchmarks/tracking.py [--repeats 2] [--models mlp,gbdt]

Each run is a separate process (`modelmill train`), tracked and untracked runs alternating. Two
figures per model: the median wall time of the tracked runs minus that of the untracked ones
(the whole cost, noisy on a shared machine), and the seconds the tracked runs spent in tracking
(MLflow's import, the run's creation and params, every batch of epoch metrics, the tags, the
report, plots and bundle uploaded), from the run's train.log ("seconds: tracking"). The server
comes from the tests' venv (scripts/mlflow-server.sh).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.mlflow_server import mlflow_server, server_python  # noqa: E402  (the same server the tests start)


def train(config: Path, runs: Path) -> tuple[float, float | None]:
    """Wall seconds of one `modelmill train`, and the seconds its log says tracking took."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "train", str(config), "--runs", str(runs)],
                          capture_output=True, text=True, cwd=config.parent)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"train failed:\n{done.stderr[-3000:]}")
    if "tracking:" in done.stderr:  # a warning: the run was not (fully) tracked, so its cost is not what we measure
        raise SystemExit(f"tracking did not work:\n{done.stderr[-2000:]}")
    log = max(runs.rglob("train.log"), key=lambda p: p.stat().st_mtime).read_text()
    found = re.findall(r"seconds: tracking ([0-9.]+)", log)
    return wall, float(found[-1]) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default="mlp,gbdt")
    args = parser.parse_args()
    if server_python() is None:
        raise SystemExit("no MLflow server venv: run `bash scripts/mlflow-server.sh` first")
    base = yaml.safe_load((ROOT / "examples" / "adult" / "adult.yaml").read_text())
    results = []
    with tempfile.TemporaryDirectory() as folder, mlflow_server() as server:
        work = Path(folder)
        for model in args.models.split(","):
            config = {**base, "model": {"type": model}, "training": {**base.get("training", {}), "progress": False}}
            plain, tracked = work / f"{model}.yaml", work / f"{model}-tracked.yaml"
            plain.write_text(yaml.safe_dump(config))
            tracked.write_text(yaml.safe_dump({**config, "tracking": {"uri": server.uri,
                                                                      "experiment": f"adult-{model}"}}))
            walls: dict[str, list[float]] = {"plain": [], "tracked": []}
            inside: list[float] = []
            for repeat in range(args.repeats):
                walls["plain"].append(train(plain, work / "runs")[0])
                wall, seconds = train(tracked, work / "runs")
                walls["tracked"].append(wall)
                if seconds is not None:
                    inside.append(seconds)
                print(f"{model} repeat {repeat}: untracked {walls['plain'][-1]:.1f} s, tracked {wall:.1f} s "
                      f"(tracking {seconds} s)", file=sys.stderr)
            row = {"model": model, "untracked_s": statistics.median(walls["plain"]),
                   "tracked_s": statistics.median(walls["tracked"]),
                   "tracking_s": statistics.median(inside) if inside else None}
            row["difference_s"] = row["tracked_s"] - row["untracked_s"]
            results.append(row)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "repeats": args.repeats,
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
