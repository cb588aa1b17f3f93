"""One-record prediction in process: modelmill's predictor (the fast path for a few
records, and the frame path every record took before it) against LightGBM's single-row
predict, on the adult census table, in one run.

    .venv/bin/python benchmarks/predictor_latency.py [--calls 10000] [--bundle runs/adult/latest]
    .venv/bin/python benchmarks/predictor_latency.py --model gbdt      # the adult example with model type gbdt

Without --bundle the adult example (examples/adult/adult.yaml, the default `mlp`) is
trained first (with --model, that model type in place of the example's). Each figure is the median (and p99) of --calls calls on the same record,
after 200 untimed calls.

Calls are timed in alternating rounds of 1,000 (so drift on a shared machine hits every
side alike), and medians and p99 are taken over all the calls of each.

* fast path: `Predictor.predict_records([record])`: a dict in, `Predictions` out.
* fast path, as served: the same plus the JSON-ready output records of the REST service.
* frame path: `Predictor.predict(DataFrame.from_records([record]))`, the route of a
  one-record request before the fast path existed.
* LightGBM: `Booster.predict` of one row (a float64 array, categories as codes) of an
  `LGBMClassifier()` with its defaults, trained on the same training rows; and the same
  call with a one-row DataFrame of pandas categories.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from modelmill.api import Pipeline  # noqa: E402
from modelmill.bundle import read_bundle  # noqa: E402
from modelmill.predictor import Predictor, prediction_records  # noqa: E402


def timed(calls: dict[str, Callable[[], Any]], count: int, round_size: int = 1000) -> dict[str, tuple[float, float]]:
    """(median, p99) in microseconds of each call, timed in alternating rounds."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(200):
            call()
    while min(len(s) for s in samples.values()) < count:
        for name, call in calls.items():
            for _ in range(min(round_size, count - len(samples[name]))):
                started = time.perf_counter_ns()
                call()
                samples[name].append((time.perf_counter_ns() - started) / 1000)
    return {name: (statistics.median(s), sorted(s)[int(len(s) * 0.99)]) for name, s in samples.items()}


def lightgbm_peer(predictor: Predictor, train: pd.DataFrame, record: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    import lightgbm

    names = [f.name for f in predictor.features]
    categorical = [f.name for f in predictor.features if f.schema().get("values") is not None
                   and f.schema()["type"] == "category"]
    frame = train[names].copy()
    dtypes = {}
    for column in categorical:
        dtypes[column] = pd.CategoricalDtype(sorted(frame[column].dropna().astype(str).unique()))
        frame[column] = frame[column].astype(str).astype(dtypes[column])
    for column in set(names) - set(categorical):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype("category")
            dtypes[column] = frame[column].dtype
    labels = (train[predictor.target.name].astype(str) == predictor.target.class_names[-1]).to_numpy()
    model = lightgbm.LGBMClassifier(verbose=-1, random_state=0).fit(frame, labels)
    booster = model.booster_
    one = pd.DataFrame.from_records([record], columns=names)
    for column, dtype in dtypes.items():
        one[column] = one[column].astype(str).astype(dtype)
    row = np.array([[one[c].cat.codes.iloc[0] if c in dtypes else one[c].iloc[0] for c in names]], dtype=np.float64)
    assert abs(booster.predict(row)[0] - model.predict_proba(one)[0, 1]) < 1e-9  # the same prediction
    return {"LightGBM Booster.predict, one row (float64 array)": lambda: booster.predict(row),
            "LightGBM LGBMClassifier.predict_proba, one-row DataFrame": lambda: model.predict_proba(one)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--model", help="model type to train instead of the example's (gbdt, linear …)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        config = yaml.safe_load((ROOT / "examples/adult/adult.yaml").read_text())
        if args.model:
            config["model"] = {"type": args.model}
        config["training"] = {**config.get("training", {}), "progress": False}
        pipeline = Pipeline(config, base_dir=ROOT / "examples/adult")
        if args.bundle is None:
            pipeline.fit()
            bundle = pipeline.save(Path(temp) / "bundle")
        else:
            bundle = args.bundle
        predictor = Predictor.from_bundle(read_bundle(bundle))
        frame = pipeline.read()
    names = [f.name for f in predictor.features]
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in frame[names].iloc[0].to_dict().items()}
    target = predictor.config.target.name
    torch.set_num_threads(1)  # one record: one thread (as the server's auto setting does on 2 cores)
    fast = predictor.predict_records([record])
    slow = predictor.predict(pd.DataFrame.from_records([record], columns=names))
    assert np.array_equal(fast.proba, slow.proba)
    calls: dict[str, Callable[[], Any]] = {
        "modelmill fast path: predict_records([record])": lambda: predictor.predict_records([record]),
        "modelmill fast path + JSON-ready records (as served)":
            lambda: prediction_records(predictor.predict_records([record]), target),
        "modelmill frame path: predict(DataFrame.from_records([record]))":
            lambda: predictor.predict(pd.DataFrame.from_records([record], columns=names)),
    }
    calls.update(lightgbm_peer(predictor, frame, record))
    results = timed(calls, args.calls)
    many = frame[names].sample(n=10_000, random_state=0)
    torch.set_num_threads(os.cpu_count() or 1)  # a batch: every core, as `modelmill predict` has them
    batch_seconds = statistics.median(_seconds(lambda: predictor.predict(many)) for _ in range(5))
    print(f"# one-record prediction, adult — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{platform.machine()}, torch {torch.__version__}, {args.calls:,} calls each, 1 thread")
    print("| call | median µs | p99 µs |")
    print("|---|---|---|")
    for name, (median, p99) in results.items():
        print(f"| {name} | {median:.0f} | {p99:.0f} |")
    peer = results["LightGBM Booster.predict, one row (float64 array)"][0]
    ours = results["modelmill fast path: predict_records([record])"][0]
    before = results["modelmill frame path: predict(DataFrame.from_records([record]))"][0]
    print(f"fast path ÷ LightGBM: {ours / peer:.2f}; frame path ÷ fast path: {before / ours:.1f}")
    print(f"model type {predictor.config.model.type}; 10,000 rows in one predict call: {batch_seconds:.3f} s "
          f"(median of 5, {torch.get_num_threads()} threads)")


def _seconds(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
