"""AutoGluon as a peer of benchmarks/tabular_quality.py, run by AutoGluon's own Python (a
virtual environment of its own: `python -m venv AG && AG/bin/pip install torch==2.13.0
"autogluon.tabular[all]"`). Reads the split the benchmark wrote, fits, prints one JSON line.

    AG/bin/python benchmarks/autogluon_peer.py SPLIT_DIR TASK
"""

import json
import sys
import tempfile
import time

import numpy as np
import pandas as pd


def main() -> None:
    folder, task = sys.argv[1], sys.argv[2]
    from autogluon.tabular import TabularPredictor

    train = pd.read_parquet(f"{folder}/train.parquet")
    test = pd.read_parquet(f"{folder}/test.parquet")
    metric = "root_mean_squared_error" if task == "number" else "roc_auc"
    with tempfile.TemporaryDirectory() as path:
        started = time.perf_counter()
        predictor = TabularPredictor(label="__y__", eval_metric=metric, path=path, verbosity=0).fit(
            train, presets="medium_quality")
        if task == "number":
            error = predictor.predict(test.drop(columns="__y__")).to_numpy() - test["__y__"].to_numpy()
            score = float(np.sqrt(np.mean(error ** 2)))
        else:
            from sklearn.metrics import roc_auc_score

            proba = predictor.predict_proba(test.drop(columns="__y__"))
            score = float(roc_auc_score(test["__y__"].to_numpy(), proba[True].to_numpy()))
        seconds = time.perf_counter() - started
    print(json.dumps({"score": score, "seconds": seconds}))


if __name__ == "__main__":
    main()
