"""General versus specialised text models on the Amazon fine-food reviews (official split:
4,000 training and 1,000 test texts), through the real ``modelmill compare`` command.

    .venv/bin/python benchmarks/text_compare.py [--models tfidf_lr,cnn,frozen,finetune] [--out results.json]

One ``modelmill compare examples/reviews/reviews.yaml`` run trains every variant on the same
split, with an empty embedding cache (so the frozen encoder's one pass over the data is
part of its time). In the same run, the peer: scikit-learn's own TfidfVectorizer (words and
word pairs, sublinear tf) + LogisticRegression on the same texts, the usual baseline.
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

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "reviews" / "reviews.yaml"
DEFAULT_MODELS = "tfidf_lr,bag,cnn,rnn,transformer,frozen,finetune,lora"


def sklearn_peer() -> dict[str, float]:
    """TfidfVectorizer(1-2 grams, sublinear tf) + LogisticRegression(C=10) on the same split."""
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score

    from modelmill.data.datasets import fetch_dataset

    train = pd.read_csv(fetch_dataset("fine_food_train"))
    test = pd.read_csv(fetch_dataset("fine_food_test"))
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(train["review"].fillna(""))
    model = LogisticRegression(C=10.0, max_iter=1000).fit(features, train["score"])
    seconds = time.perf_counter() - started
    proba = model.predict_proba(vectorizer.transform(test["review"].fillna("")))
    positive = list(model.classes_).index("great")
    return {"accuracy": float(accuracy_score(test["score"], model.classes_[proba.argmax(axis=1)])),
            "roc_auc": float(roc_auc_score(test["score"] == "great", proba[:, positive])),
            "fit_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        env = {**os.environ, "MODELMILL_CACHE": str(Path(temp) / "cache"), "COLUMNS": "200"}
        # the data sets are materialised first, so the compare run's times are the models' own
        subprocess.run([sys.executable, "-m", "modelmill.cli", "datasets", "fetch", "fine_food_train"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "modelmill.cli", "datasets", "fetch", "fine_food_test"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "modelmill.cli", "compare", str(CONFIG), "--models", args.models,
                        "--runs", str(Path(temp) / "runs")], env=env, check=True)
        total = time.perf_counter() - started
        report = next((Path(temp) / "runs").glob("*/*/comparison.json"))
        rows = {row["variant"]: row for row in json.loads(report.read_text())}
        os.environ["MODELMILL_CACHE"] = env["MODELMILL_CACHE"]
        peer = sklearn_peer()
    summary: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "compare_seconds": total, "variants": rows, "sklearn_tfidf_logistic": peer,
    }
    print(f"\nscikit-learn TF-IDF + LogisticRegression (peer): accuracy {peer['accuracy']:.4f}, "
          f"roc_auc {peer['roc_auc']:.4f}, fit {peer['fit_seconds']:.1f} s")
    if "frozen" in rows and "tfidf_lr" in rows:
        gain = rows["frozen"]["metrics"]["accuracy"] - rows["tfidf_lr"]["metrics"]["accuracy"]
        print(f"frozen encoder + head vs TF-IDF + LR: {gain * 100:+.1f} accuracy points")
    for tuned in ("finetune", "lora", "full"):
        if tuned in rows and "frozen" in rows:
            gain = rows[tuned]["metrics"]["accuracy"] - rows["frozen"]["metrics"]["accuracy"]
            ratio = rows[tuned]["seconds_per_epoch"] / rows["frozen"]["seconds_per_epoch"]
            print(f"{tuned} vs frozen: {gain * 100:+.1f} accuracy points; an epoch takes {ratio:.0f}x as long")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
