"""Text quality: the config `modelmill init` writes for the fine-food reviews (official split:
4,000 training and 1,000 test texts), trained by `modelmill train`, against scikit-learn's
TF-IDF + logistic regression on the same texts, in one run.

    .venv/bin/python benchmarks/text_quality.py

Our config is exactly what `modelmill init dataset:fine_food_train --target score` writes
(the `product` column as init decides), with the split set to the official test file. Our
seconds are the whole `modelmill train` process, from an empty embedding cache. The peer:
`TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)` +
`LogisticRegression(C=10, max_iter=2000)` on all 4,000 training texts; its seconds are fit +
predict.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def sklearn_peer() -> dict[str, float]:
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score

    from modelmill.data.datasets import fetch_dataset

    train = pd.read_csv(fetch_dataset("fine_food_train"))
    test = pd.read_csv(fetch_dataset("fine_food_test"))
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(C=10.0, max_iter=2000).fit(vectorizer.fit_transform(train["review"].fillna("")),
                                                          train["score"])
    proba = model.predict_proba(vectorizer.transform(test["review"].fillna("")))
    seconds = time.perf_counter() - started
    positive = list(model.classes_).index("great")
    return {"accuracy": float(accuracy_score(test["score"], model.classes_[proba.argmax(axis=1)])),
            "roc_auc": float(roc_auc_score(test["score"] == "great", proba[:, positive])), "seconds": seconds}


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        env = {**os.environ, "MODELMILL_CACHE": str(Path(temp) / "cache"), "COLUMNS": "200"}
        cli = [sys.executable, "-m", "modelmill.cli"]
        for name in ("fine_food_train", "fine_food_test"):
            subprocess.run([*cli, "datasets", "fetch", name], check=True, env=env, capture_output=True)
        done = subprocess.run([*cli, "init", "dataset:fine_food_train", "--target", "score"], check=True, env=env,
                              capture_output=True, text=True)
        config = yaml.safe_load(done.stdout)
        config["data"]["split"] = {"method": "files", "test_source": "dataset:fine_food_test"}
        config.setdefault("training", {})["progress"] = False
        path = Path(temp) / "reviews.yaml"
        path.write_text(yaml.safe_dump(config))
        started = time.perf_counter()
        subprocess.run([*cli, "train", str(path), "--runs", str(Path(temp) / "runs")], check=True, env=env,
                       capture_output=True)
        seconds = time.perf_counter() - started
        bundle = next((Path(temp) / "runs").glob("*/latest/bundle"))
        metrics = json.loads((bundle / "metrics.json").read_text())
    peer = sklearn_peer()
    print(f"# text quality — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}")
    print("features:", json.dumps(config["features"]), "model:", json.dumps(config["model"]))
    print("| | test accuracy | test ROC-AUC | seconds |")
    print("|---|---|---|---|")
    print(f"| modelmill train, init's config | {metrics['accuracy']:.4f} | {metrics['roc_auc']:.4f} | {seconds:.1f} |")
    print(f"| TF-IDF + LogisticRegression | {peer['accuracy']:.4f} | {peer['roc_auc']:.4f} | {peer['seconds']:.1f} |")
    for candidate in metrics.get("candidates", []):
        print(f"| candidate {candidate['name']} (weight {candidate.get('weight', 0):.2f}, {candidate.get('seconds', 0):.1f} s) "
              f"| | {candidate.get('test', float('nan')):.4f} | |")


if __name__ == "__main__":
    sys.exit(main())
