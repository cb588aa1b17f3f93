"""How far hyper-parameter search can lift a table's test score at all: a random search of
LightGBM settings on the split `benchmarks/tune.py` uses, scored on the test rows, beside the
untuned `auto` config trained with training seeds 0, 1 and 2 in the same run.

    .venv/bin/python benchmarks/tune_ceiling.py adult --configs 40

Each LightGBM config is fitted on the training rows with early stopping on the validation
rows, then refitted on training + validation rows for the iterations it stopped at (as
``gbdt`` does). Three figures bound what any search over such settings can reach:

* the test score of the config a search would pick (best on validation),
* the best test score of any config (an oracle: it picks by the test rows themselves),
* greedy ensemble selection (Caruana et al., 2004; 100 rounds, the best round kept) over all
  configs and the three untuned `auto` models (their linear and MLP members bring what trees
  lack), weighed on the test rows (an oracle ensemble).

If even the oracles stay below the untuned median plus the spread over training seeds, a
search that chooses among these candidates by validation rows cannot beat the untuned config
by more than its noise on this split.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from tabular_quality import our_config, run_modelmill  # noqa: E402

import modelmill  # noqa: E402
from modelmill.config import parse_config  # noqa: E402
from modelmill.data.clean import clean_rows  # noqa: E402
from modelmill.data.sources import read_table  # noqa: E402
from modelmill.data.split import split_frame  # noqa: E402
from modelmill.features import build_features  # noqa: E402


def frames(table: str, seed: int) -> tuple[list[pd.DataFrame], list[np.ndarray], pd.DataFrame]:
    """Training, validation and test rows of our split, LightGBM's way (categories native), and
    the test rows as read (for our models)."""
    config = parse_config(our_config(table, "auto", "init", seed=seed))
    whole = read_table(config.data, base_dir=ROOT)
    whole, _ = clean_rows(whole, config, build_features(config))
    parts = split_frame(whole, config.data.split, target=config.target.name, classify=True)
    positive = sorted(whole[config.target.name].astype(str).unique())[-1]
    seen = {f.name: sorted(parts[0][f.name].dropna().astype(str).unique())
            for f in config.features if f.type != "number"}

    def columns(part: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for feature in config.features:
            values = part[feature.name]
            if feature.type == "number":
                out[feature.name] = pd.to_numeric(values, errors="coerce")
            else:  # unseen categories are missing, as our features treat them
                text = values.astype(str).where(values.notna())
                out[feature.name] = pd.Categorical(text.where(text.isin(seen[feature.name])),
                                                   categories=seen[feature.name])
        return pd.DataFrame(out)

    truths = [(p[config.target.name].astype(str) == positive).to_numpy() for p in parts]
    return [columns(p) for p in parts], truths, parts[2]


def sample(rng: np.random.Generator) -> dict[str, float | int]:
    def log_uniform(low: float, high: float) -> float:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))

    return {"learning_rate": log_uniform(0.01, 0.1), "num_leaves": int(log_uniform(8, 128)),
            "min_child_samples": int(log_uniform(5, 100)), "colsample_bytree": float(rng.uniform(0.3, 1.0)),
            "subsample": float(rng.uniform(0.5, 1.0)), "subsample_freq": 1, "reg_lambda": log_uniform(1e-3, 10.0),
            "cat_smooth": log_uniform(1.0, 50.0)}


def greedy(predictions: list[np.ndarray], truth: np.ndarray, rounds: int = 100) -> float:
    """The best score of greedy ensemble selection with replacement, weighed on ``truth``: each
    round adds the model whose addition scores best; the best round's ensemble is kept (a later
    round may score lower)."""
    total, best = np.zeros_like(predictions[0]), 0.0
    for step in range(rounds):
        score, pick = max((roc_auc_score(truth, (total + p) / (step + 1)), i) for i, p in enumerate(predictions))
        total, best = total + predictions[pick], max(best, score)
    return float(best)


@dataclass(frozen=True)
class Fit:
    """One LightGBM config's scores and its test predictions."""

    valid: float
    test: float
    predictions: np.ndarray


def main() -> None:
    import lightgbm as lgb

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=["adult", "german_credit", "caravan", "oj"])
    parser.add_argument("--configs", type=int, default=40)
    parser.add_argument("--split", type=int, default=0)
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()}", flush=True)
    (x_train, x_valid, x_test), (y_train, y_valid, y_test), test_rows = frames(args.table, args.split)
    untuned, ours = [], []
    with tempfile.TemporaryDirectory() as folder:
        for training_seed in (0, 1, 2):
            config = our_config(args.table, "auto", "init", seed=args.split)
            config["name"] = f"{args.table}-auto-t{training_seed}"
            config["training"]["seed"] = training_seed
            untuned.append(run_modelmill(config, Path(folder))[0]["roc_auc"])
            predicted = modelmill.load(Path(folder, "runs", config["name"], "latest", "bundle")).predict(test_rows)
            ours.append(predicted.iloc[:, -1].to_numpy())  # the last class's probability: the positive one
            print(f"untuned auto, training seed {training_seed}: test {untuned[-1]:.4f} (its predictions here: "
                  f"{roc_auc_score(y_test, ours[-1]):.4f})", flush=True)
    median, spread = statistics.median(untuned), max(untuned) - min(untuned)
    print(f"untuned auto, training seeds 0/1/2: {' / '.join(f'{u:.4f}' for u in untuned)}; "
          f"median {median:.4f}, spread {spread:.4f}: the bar is above {median + spread:.4f}", flush=True)
    both_x, both_y = pd.concat([x_train, x_valid]), np.concatenate([y_train, y_valid])
    rng = np.random.default_rng(0)
    fits = []
    for i in range(args.configs):
        params = sample(rng) | {"verbose": -1, "random_state": i}
        held = lgb.LGBMClassifier(n_estimators=5000, **params).fit(
            x_train, y_train, eval_set=[(x_valid, y_valid)], eval_metric="auc",
            callbacks=[lgb.early_stopping(100, verbose=False)])
        valid = roc_auc_score(y_valid, held.predict_proba(x_valid)[:, 1])
        refit = lgb.LGBMClassifier(n_estimators=held.best_iteration_, **params).fit(both_x, both_y)
        test = refit.predict_proba(x_test)[:, 1]
        fits.append(Fit(valid, roc_auc_score(y_test, test), test))
        print(f"config {i}: validation {valid:.4f}, test {fits[-1].test:.4f}, {held.best_iteration_} trees", flush=True)
    chosen = max(fits, key=lambda fit: fit.valid)
    oracle = max(fit.test for fit in fits)
    ensemble = greedy([fit.predictions for fit in fits] + ours, y_test)
    print(f"{args.table}, split {args.split}, {args.configs} LightGBM configs: best on validation scores "
          f"{chosen.test:.4f} on test; the best on test (oracle) {oracle:.4f}; the oracle ensemble {ensemble:.4f}; "
          f"untuned auto {median:.4f} + spread {spread:.4f} = {median + spread:.4f}", flush=True)


if __name__ == "__main__":
    main()
