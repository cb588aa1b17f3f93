"""Data-parallel training on Ray against the local backend, in one run: the same config fitted
by `training.backend: local` and by `training.backend: ray` with N workers (Ray Train's
TorchTrainer, DDP), the same split and seed; the test metric of both and their difference, the
seconds of the fit, and the peak resident memory: of this process after the local fit, and
of the largest Ray worker (what each worker holds: its shard of the training rows, all the
validation rows, the model).

    .venv/bin/python benchmarks/ray_train.py                       # adult, 2 workers
    .venv/bin/python benchmarks/ray_train.py adult mnist --workers 2
    .venv/bin/python benchmarks/ray_train.py numbers --rows 2000000
    .venv/bin/python benchmarks/ray_train.py shards --rows 20000000   # in shards, Ray only

Tables: adult (examples/adult/adult.yaml: the UCI rows shipped in PyPI's mglearn, test ROC-AUC),
mnist (examples/mnist/fast.yaml, test accuracy; fetch it first with
`.venv/bin/python examples/mnist/fetch.py`) and numbers (generated: `--rows` rows of 32 numbers,
one epoch of an mlp, test ROC-AUC; a table whose memory is its numbers). The Ray run uses the
cluster at RAY_ADDRESS, else a private one that modelmill starts on this machine (its start-up
is not in the figures: the first fit on it is). "fit" is the wall clock of fitting the model
(for Ray: putting the data into the object store, starting the workers, the epochs, the
checkpoints, getting the weights back); "epochs" is the time of the epochs alone, as the
trainer counts it (on Ray: rank 0's). The peaks are high-water marks since each process
started: this process's includes whatever ran before in it (the earlier tables of the same
command, generating the numbers table when it is not cached yet), so take one table per
command for a clean figure.

``shards`` is the numbers table written as Parquet files of a million rows each and fitted
with ``data.shards: true`` on Ray alone (read, cleaned, split, fitted and transformed on the
cluster, streamed to the workers): it reports this process's peak (the driver: validation
rows, the test outputs, a sample) beside the largest worker's, rows a second of the whole fit
and of the epoch, and the seconds of each stage. Compare it with ``numbers`` of the same
``--rows``, run as another command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from modelmill.api import Pipeline
from modelmill.config import load_config
from modelmill.config.schema import PipelineConfig
from modelmill.training.runtime import peak_rss

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
NUMBERS = 32
TABLES = {"adult": (ROOT / "examples/adult/adult.yaml", "roc_auc"),
          "mnist": (ROOT / "examples/mnist/fast.yaml", "accuracy"),
          "numbers": (CACHE / "numbers.yaml", "roc_auc"),
          "shards": (CACHE / "shards.yaml", "roc_auc")}
FILE_ROWS = 1_000_000  # rows per Parquet file of the shards table


def numbers_frame(rows: int, seed: int = 0) -> Any:
    """``rows`` × 32 numbers and a binary target (a noisy sum of four of them)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, NUMBERS)).astype("float32")
    frame = pd.DataFrame(values, columns=[f"n{i}" for i in range(NUMBERS)])
    frame["y"] = np.where(values[:, :4].sum(axis=1) + rng.normal(size=rows) > 0, "yes", "no")
    return frame


def numbers_table(rows: int, *, shards: bool = False) -> None:
    """A generated table of ``rows`` numbers (``numbers_frame``), as Parquet (one file, or files
    of ``FILE_ROWS`` rows for ``shards``), with a config that trains an mlp on it for one epoch:
    a table whose memory is its numbers."""
    import yaml

    CACHE.mkdir(exist_ok=True)
    if shards:
        data = CACHE / f"numbers-{rows}"
        if not data.exists():
            data.with_suffix(".part").mkdir(exist_ok=True)
            for i, start in enumerate(range(0, rows, FILE_ROWS)):  # one file in memory at a time
                numbers_frame(min(FILE_ROWS, rows - start), seed=i).to_parquet(
                    data.with_suffix(".part") / f"part-{i:04d}.parquet")
            data.with_suffix(".part").rename(data)
    else:
        data = CACHE / f"numbers-{rows}.parquet"
        if not data.exists():
            numbers_frame(rows).to_parquet(data)
    config = {"name": "numbers", "data": {"source": data.name, "split": {"test": 0.1, "valid": 0.02, "seed": 0},
                                          "shards": shards},
              "features": [{"name": f"n{i}", "type": "number"} for i in range(NUMBERS)],
              "target": {"name": "y", "type": "binary"}, "model": {"type": "mlp", "hidden": [32]},
              "cleaning": {"duplicates": "keep"}, "training": {"epochs": 1, "batch_size": 4096},
              "evaluation": {"explain": 0}}
    (CACHE / ("shards.yaml" if shards else "numbers.yaml")).write_text(yaml.safe_dump(config))


def with_backend(config: PipelineConfig, backend: str, workers: int) -> PipelineConfig:
    raw = config.model_dump(mode="json", exclude_unset=True)
    raw["training"] = {**raw.get("training", {}), "backend": backend, "workers": workers, "progress": False}
    return load_config(raw)


def fit(path: Path, backend: str, workers: int) -> dict[str, Any]:
    pipeline = Pipeline(with_backend(load_config(path), backend, workers), base_dir=path.parent)
    started = time.perf_counter()
    pipeline.fit()
    seconds = time.perf_counter() - started
    result = pipeline.result_
    assert result is not None
    peak = result.worker_peak_rss if backend == "ray" else peak_rss()
    private = result.worker_peak_private if backend == "ray" else None
    cleaning = pipeline.cleaning_
    return {"metrics": pipeline.metrics_, "seconds": seconds, "epoch_seconds": result.seconds,
            "rows": pipeline.metrics_.get("rows", {}), "rows_read": cleaning.rows_in if cleaning else None,
            "stages": dict(pipeline.timings_),
            "epochs": result.epochs_run, "best_epoch": result.best_epoch,
            "peak_mib": peak / 2**20 if peak else None, "private_mib": private / 2**20 if private else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="*", default=["adult"], choices=sorted(TABLES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2_000_000, help="Rows of the generated numbers table.")
    parser.add_argument("--out", type=Path, default=None, help="Write the figures as JSON here too.")
    parser.add_argument("--local-only", action="store_true",
                        help="Fit the local backend alone (the single-machine side of a shards run).")
    args = parser.parse_args()
    if not os.environ.get("RAY_ADDRESS"):  # start the private cluster before any timing
        from modelmill.cluster import connect

        connect()
    if "numbers" in args.tables:
        numbers_table(args.rows)
    if "shards" in args.tables:
        numbers_table(args.rows, shards=True)
    rows = []
    for table in args.tables:
        path, metric = TABLES[table]
        if table == "shards":
            in_shards(path, metric, args.workers, args.out)
            continue
        local = fit(path, "local", 1)
        if args.local_only:
            print(json.dumps({"table": table, "metric": metric, "local": local["metrics"][metric],
                              "local_fit_s": local["seconds"], "local_epoch_s": local["epoch_seconds"],
                              "rows_read": local["rows_read"], "rows_per_s": local["rows_read"] / local["seconds"],
                              "train_rows_per_s": local["rows"]["train"] * local["epochs"] / local["epoch_seconds"],
                              "local_peak_mib": local["peak_mib"], "stages_s": local["stages"]}), flush=True)
            continue
        ray = fit(path, "ray", args.workers)
        row = {"table": table, "metric": metric, "workers": args.workers,
               "local": local["metrics"][metric], "ray": ray["metrics"][metric],
               "difference": ray["metrics"][metric] - local["metrics"][metric],
               "local_fit_s": local["seconds"], "ray_fit_s": ray["seconds"],
               "local_epochs": local["epochs"], "ray_epochs": ray["epochs"],
               "local_epoch_s": local["epoch_seconds"], "ray_epoch_s": ray["epoch_seconds"],
               "local_peak_mib": local["peak_mib"], "ray_worker_peak_mib": ray["peak_mib"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print("| table | metric | local | ray × workers | difference | local fit s | ray fit s | ratio | epochs local/ray "
          "| peak MiB: local process / largest ray worker |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['table']} | test {r['metric']} | {r['local']:.4f} | {r['ray']:.4f} × {r['workers']} | "
              f"{r['difference']:+.4f} | {r['local_fit_s']:.1f} | {r['ray_fit_s']:.1f} | "
              f"{r['ray_fit_s'] / r['local_fit_s']:.2f}× | {r['local_epochs']}/{r['ray_epochs']} | "
              f"{_mib(r['local_peak_mib'])} / {_mib(r['ray_worker_peak_mib'])} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


def in_shards(path: Path, metric: str, workers: int, out: Path | None) -> None:
    """The shards table fitted in shards on Ray: rows a second and the peaks (see the module)."""
    before = peak_rss()
    ray = fit(path, "ray", workers)
    pipeline_rows = ray["rows"]
    row = {"table": "shards", "metric": metric, "workers": workers, "ray": ray["metrics"][metric],
           "rows_read": ray["rows_read"], "train_rows": pipeline_rows["train"], "fit_s": ray["seconds"],
           "epoch_s": ray["epoch_seconds"], "stages_s": ray["stages"],
           "rows_per_s": ray["rows_read"] / ray["seconds"],
           "train_rows_per_s": pipeline_rows["train"] * ray["epochs"] / ray["epoch_seconds"],
           "driver_peak_mib": peak_rss() / 2**20, "driver_peak_before_mib": before / 2**20,
           "worker_peak_mib": ray["peak_mib"], "worker_private_peak_mib": ray["private_mib"]}
    print(json.dumps(row), flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print("| rows read | test ROC-AUC | fit s | rows/s (whole fit) | training rows/s (epoch) | peak MiB: driver / "
          "largest worker (resident / private) |")
    print("|---|---|---|---|---|---|")
    print(f"| {row['rows_read']:,} | {row['ray']:.4f} | {row['fit_s']:.0f} | {row['rows_per_s']:,.0f} | "
          f"{row['train_rows_per_s']:,.0f} | {row['driver_peak_mib']:,.0f} / {_mib(row['worker_peak_mib'])} / "
          f"{_mib(row['worker_private_peak_mib'])} |")
    print("stages (s): " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in row["stages_s"].items()))
    if out:
        out.write_text(json.dumps(row, indent=2))


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    main()
