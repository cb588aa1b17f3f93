"""What `modelmill tune` adds: the best config it finds within a time budget against the
untuned config `modelmill init` writes (model `auto`), on the same split, in one run.

    .venv/bin/python benchmarks/tune.py adult --timeout 600                      # 10 minutes, split seed 0
    .venv/bin/python benchmarks/tune.py german_credit --timeout 180 --splits 0-4 # five splits, their means

For each split seed: the untuned config is trained with training seeds 0, 1 and 2 (the
spread of those three test scores is the noise a tuned config must beat); then `modelmill
tune CONFIG --timeout T` searches with the built-in space (the ensemble of auto's candidates,
each member's own settings; the untuned config is its first trial) and trains the best config
once, scored on the test split (what the script reports as tuned). Every figure is a whole
command's: process start to report. The pruned share is read from the study.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from tabular_quality import our_config, run_modelmill  # noqa: E402


def tune(config: dict[str, Any], workdir: Path, timeout: float) -> dict[str, Any]:
    """The study's summary (tune.json) and the wall seconds of the whole `modelmill tune`."""
    path = workdir / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "tune", str(path), "--timeout", str(timeout),
                           "--runs", str(workdir / "runs")], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    summary = json.loads((workdir / "runs" / "tune" / config["name"] / "tune.json").read_text())
    summary["seconds"] = time.perf_counter() - started
    return summary


def one_split(table: str, seed: int, timeout: float, workdir: Path) -> dict[str, Any]:
    metric = "roc_auc"
    untuned = []
    for training_seed in (0, 1, 2):
        config = our_config(table, "auto", "init", seed=seed)
        config["name"] = f"{table}-auto-{seed}-t{training_seed}"
        config["training"]["seed"] = training_seed
        metrics, seconds = run_modelmill(config, workdir)
        untuned.append({"test": metrics[metric], "valid": metrics.get(f"valid_{metric}"), "seconds": seconds})
    config = our_config(table, "auto", "init", seed=seed)
    config["name"] = f"{table}-tune-{seed}"
    study = tune(config, workdir, timeout)
    tests = [u["test"] for u in untuned]
    return {"table": table, "split_seed": seed, "metric": metric, "untuned": untuned,
            "untuned_median": statistics.median(tests), "untuned_spread": max(tests) - min(tests),
            "tuned_test": study["test_metrics"][metric], "tuned_valid": study["best_value"],
            "untuned_valid_seed0": untuned[0]["valid"], "trials": study["counts"],
            "pruned_share": study["pruned_share"], "best_trial": study["best_trial"],
            "best_overrides": study["best_overrides"], "tune_seconds": study["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=["adult", "german_credit", "caravan", "oj"])
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds of search per split.")
    parser.add_argument("--splits", default="0", help="Split seeds: 0, 0-4 or 0,2.")
    args = parser.parse_args()
    if "-" in args.splits:
        low, high = args.splits.split("-")
        seeds = list(range(int(low), int(high) + 1))
    else:
        seeds = [int(s) for s in args.splits.split(",")]
    print(f"# {time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · "
          f"python {platform.python_version()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            row = one_split(args.table, seed, args.timeout, Path(folder))
            rows.append(row)
            print(json.dumps(row), flush=True)
    mean = statistics.fmean
    print(f"{args.table}: untuned auto median {mean(r['untuned_median'] for r in rows):.4f} (spread over training "
          f"seeds {mean(r['untuned_spread'] for r in rows):.4f}), tuned {mean(r['tuned_test'] for r in rows):.4f}; "
          f"gain {mean(r['tuned_test'] - r['untuned_median'] for r in rows):+.4f}; pruned share "
          f"{mean(r['pruned_share'] for r in rows):.2f} over {len(rows)} split(s)", flush=True)
    if len(rows) > 1:  # the means over splits, per training seed: the noise of a mean over splits is their spread
        means = [mean(r["untuned"][i]["test"] for r in rows) for i in range(3)]
        gains = [r["tuned_test"] - r["untuned_median"] for r in rows]
        tuned = mean(r["tuned_test"] for r in rows)
        print(f"{args.table}: untuned auto's mean over the splits per training seed "
              f"{' / '.join(f'{m:.4f}' for m in means)} (spread {max(means) - min(means):.4f}); tuned's mean "
              f"{tuned:.4f}, gain {tuned - statistics.median(means):+.4f} over their median; the gain per split "
              f"{', '.join(f'{g:+.4f}' for g in gains)} "
              f"(standard error of its mean {statistics.stdev(gains) / len(gains) ** 0.5:.4f})", flush=True)


if __name__ == "__main__":
    main()
