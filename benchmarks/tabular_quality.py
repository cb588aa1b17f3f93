"""Tabular quality and speed: `modelmill train` (mlp and linear) against scikit-learn's
LogisticRegression and LightGBM, on the same clean rows and the same test split, in one run.

    .venv/bin/python benchmarks/tabular_quality.py adult
    .venv/bin/python benchmarks/tabular_quality.py german_credit

Our figure is the whole `modelmill train` command, wall clock (process start, reading,
cleaning, fitting features, training, evaluation, plots, report and bundle). The peers
are timed on fit + predict only, on the same 80% (train + validation) of the rows.
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
from pathlib import Path

import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelmill.config import load_config
from modelmill.data.clean import clean_rows
from modelmill.data.sources import read_table
from modelmill.data.split import split_frame
from modelmill.features import build_features

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"adult": ROOT / "examples/adult/adult.yaml",
           "german_credit": ROOT / "examples/german_credit/german_credit.yaml"}


def run_modelmill(config_path: Path, model: dict[str, object], workdir: Path) -> tuple[float, float]:
    """(test ROC-AUC, wall seconds) of one `modelmill train` process."""
    config = yaml.safe_load(config_path.read_text())
    config["model"] = model
    config["name"] = f"{config['name']}-{model['type']}"
    path = workdir / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    subprocess.run([str(ROOT / ".venv/bin/modelmill"), "train", str(path), "--runs", str(workdir / "runs")],
                   check=True, cwd=config_path.parent, capture_output=True)
    seconds = time.perf_counter() - started
    metrics = json.loads((workdir / "runs" / config["name"] / "latest" / "bundle" / "metrics.json").read_text())
    return metrics["roc_auc"], seconds


def peers(config_path: Path) -> dict[str, tuple[float, float]]:
    config = load_config(config_path)
    frame = read_table(config.data, base_dir=config_path.parent)
    frame, _ = clean_rows(frame, config, build_features(config))
    train, valid, test = split_frame(frame, config.data.split, target=config.target.name, classify=True)
    train = pd.concat([train, valid])
    numbers = [f.name for f in config.features if f.type == "number"]
    others = [f.name for f in config.features if f.type != "number"]
    positive = sorted(frame[config.target.name].astype(str).unique())[-1]
    y_train = (train[config.target.name].astype(str) == positive).to_numpy()
    y_test = (test[config.target.name].astype(str) == positive).to_numpy()
    results = {}
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), others),
    ])
    started = time.perf_counter()
    logistic = make_pipeline(prep, LogisticRegression(max_iter=2000)).fit(train, y_train)
    auc = roc_auc_score(y_test, logistic.predict_proba(test)[:, 1])
    results["scikit-learn LogisticRegression"] = (auc, time.perf_counter() - started)
    import lightgbm
    x_train, x_test = train[numbers + others].copy(), test[numbers + others].copy()
    for column in others:
        categories = pd.CategoricalDtype(sorted(x_train[column].dropna().astype(str).unique()))
        x_train[column] = x_train[column].astype(str).astype(categories)
        x_test[column] = x_test[column].astype(str).astype(categories)
    started = time.perf_counter()
    booster = lightgbm.LGBMClassifier(n_estimators=400, learning_rate=0.05, num_leaves=31, verbose=-1,
                                      random_state=0).fit(x_train, y_train)
    auc = roc_auc_score(y_test, booster.predict_proba(x_test)[:, 1])
    results["LightGBM (400 trees)"] = (auc, time.perf_counter() - started)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=sorted(CONFIGS))
    args = parser.parse_args()
    config_path = CONFIGS[args.dataset]
    print(f"# {args.dataset} — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as temp:
        for model in ({"type": "mlp"}, {"type": "linear"}):
            auc, seconds = run_modelmill(config_path, model, Path(temp))
            rows.append((f"modelmill train ({model['type']})", auc, seconds))
    for name, (auc, seconds) in peers(config_path).items():
        rows.append((name, auc, seconds))
    print("| model | test ROC-AUC | seconds |")
    print("|---|---|---|")
    for name, auc, seconds in rows:
        print(f"| {name} | {auc:.4f} | {seconds:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
