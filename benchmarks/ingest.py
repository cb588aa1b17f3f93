"""Ingest speed: read + clean + fit features + transform a generated 1,000,000-row ×
20-column CSV (numbers, categories, dates, a binary, missing values), against pandas
`read_csv` + a scikit-learn `ColumnTransformer` doing the same work, in the same run.
Each side runs in its own process so that its peak memory (max RSS) is its own.

    .venv/bin/python benchmarks/ingest.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CACHE = Path(__file__).resolve().parent / ".cache"
NUMBERS = [f"n{i}" for i in range(8)]
CATEGORIES = [f"c{i}" for i in range(8)]
DATES = ["d0", "d1"]
BINARY = ["b0"]
TARGET = "y"


def generate(rows: int) -> Path:
    path = CACHE / f"ingest_{rows}.csv"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    data: dict[str, object] = {}
    for i, name in enumerate(NUMBERS):
        values = rng.normal(i, 1 + i, rows).round(4)
        values[rng.random(rows) < 0.05] = np.nan
        data[name] = values
    for i, name in enumerate(CATEGORIES):
        vocabulary = np.array([f"v{i}_{k}" for k in range(5 * 4**min(i, 4))], dtype=object)
        values = vocabulary[rng.integers(0, len(vocabulary), rows)]
        values[rng.random(rows) < 0.03] = None
        data[name] = values
    for name in DATES:
        days = rng.integers(0, 3650, rows)
        data[name] = (np.datetime64("2015-01-01") + days.astype("timedelta64[D]")).astype(str)
    data["b0"] = rng.choice(["yes", "no"], rows)
    data[TARGET] = rng.choice(["0", "1"], rows)
    pd.DataFrame(data).to_csv(path, index=False)
    return path


def ours(path: Path) -> int:
    from modelmill.config import parse_config
    from modelmill.data.clean import clean_rows
    from modelmill.data.sources import read_table
    from modelmill.features import build_features

    features = ([{"name": n, "type": "number"} for n in NUMBERS]
                + [{"name": n, "type": "category", "encoding": "onehot"} for n in CATEGORIES]
                + [{"name": n, "type": "date", "parts": ["year", "month", "day", "weekday"]} for n in DATES]
                + [{"name": "b0", "type": "binary"}])
    config = parse_config({"name": "ingest", "data": {"source": str(path)}, "features": features,
                           "target": {"name": TARGET, "type": "binary"}})
    frame = read_table(config.data)
    features = build_features(config)
    frame, _ = clean_rows(frame, config, features)
    fitted = [feature.fit(frame[feature.name]) for feature in features]
    tensors = [f.transform(frame[f.name]) for f in fitted]
    return sum(int(t.shape[0]) for t in tensors) // len(tensors)


def peer(path: Path) -> int:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    def date_parts(frame: pd.DataFrame) -> np.ndarray:
        parts = []
        for column in frame.columns:
            dates = pd.to_datetime(frame[column], format="mixed")
            parts.append(((dates.dt.year - 2019) / 3).to_numpy())
            for values, period in ((dates.dt.month, 12), (dates.dt.day, 31), (dates.dt.day_of_week, 7)):
                angle = 2 * np.pi * values.to_numpy() / period
                parts += [np.sin(angle), np.cos(angle)]
        return np.stack(parts, axis=1)

    frame = pd.read_csv(path)
    frame = frame.drop_duplicates()
    frame = frame[frame[TARGET].notna()]
    transformer = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMBERS),
        ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="<unknown>"),
                                     OneHotEncoder(handle_unknown="ignore")), CATEGORIES),
        ("dates", FunctionTransformer(date_parts), DATES),
        ("binary", OneHotEncoder(drop="if_binary"), BINARY),
    ])
    return int(transformer.fit_transform(frame).shape[0])


def child(side: str, path: Path) -> None:
    # Libraries are imported before the clock starts: the benchmark times the work, not imports.
    if side == "modelmill":
        import modelmill.data.clean, modelmill.data.sources, modelmill.features  # noqa: F401, E401
    else:
        import sklearn.compose, sklearn.impute, sklearn.pipeline, sklearn.preprocessing  # noqa: F401, E401
    started = time.perf_counter()
    rows = (ours if side == "modelmill" else peer)(path)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mib": peak_mib}))


def measure(side: str, path: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", side, "--file", str(path)],
                          check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["modelmill", "peer"])
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file)
        return
    path = generate(args.rows)
    results: dict[str, list[dict[str, float]]] = {"modelmill": [], "peer": []}
    for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both sides
        for side in results:
            results[side].append(measure(side, path))
    print(f"# ingest — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {platform.machine()}, "
          f"{args.rows:,} rows × 20 columns, {path.stat().st_size / 2**20:.0f} MiB CSV, median of {args.repeats}")
    medians = {side: statistics.median(r["seconds"] for r in runs) for side, runs in results.items()}
    print("| pipeline | seconds (median) | rows/s | peak RSS MiB |")
    print("|---|---|---|---|")
    names = {"modelmill": "modelmill read_table + clean + fit + transform",
             "peer": "pandas read_csv + scikit-learn ColumnTransformer"}
    for side, runs in results.items():
        peak = max(r["peak_mib"] for r in runs)
        print(f"| {names[side]} | {medians[side]:.2f} | {args.rows / medians[side]:,.0f} | {peak:.0f} |")
    print(f"ratio (rows/s, modelmill ÷ peer): {medians['peer'] / medians['modelmill']:.2f}×")


if __name__ == "__main__":
    main()
