"""Thresholds, costs and calibration of the `auto` default, through `modelmill train`:

    .venv/bin/python benchmarks/decision_quality.py

- German credit (stratified 80/20, seed 0), `positive: bad`, `costs: {false_negative: 5}`:
  the total cost on the test split at the threshold chosen on out-of-fold predictions, and
  at 0.5 (the same model's probabilities).
- adult (stratified 80/20, seed 0): test expected calibration error (15 bins) with
  `calibration: none`, `sigmoid` and `isotonic`, and the ROC-AUC of each; with the default
  class weights and with `class_weights: balanced` (which skews probabilities on purpose).
- adult, `auto` with training seeds 0, 1, 2: test ROC-AUC (and the median) and the whole
  command's seconds.

Configs are what `modelmill init` writes for the table (benchmarks/tabular_quality.py),
with the settings above.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tabular_quality import our_config, run_modelmill  # noqa: E402


def main() -> None:
    print(f"# decision quality — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}")
    with tempfile.TemporaryDirectory() as temp:
        config = our_config("german_credit", "auto", "init")
        config["target"].update({"positive": "bad", "costs": {"false_negative": 5}})
        metrics, seconds = run_modelmill(config, Path(temp))
        print(f"\nGerman credit, costs false_negative 5: threshold {metrics['threshold']:.4f}, test cost "
              f"{metrics['cost']:.0f} against {metrics['cost_at_0.5']:.0f} at 0.5 ({seconds:.1f} s)")
        print("\n| adult | calibration | test ECE | test ROC-AUC | test log loss | seconds |")
        print("|---|---|---|---|---|---|")
        for weights in ("none", "balanced"):
            for method in ("none", "sigmoid", "isotonic"):
                config = our_config("adult", "auto", "init")
                config["target"].update({"calibration": method, "class_weights": weights})
                config["name"] = f"adult-calibration-{weights}-{method}"
                metrics, seconds = run_modelmill(config, Path(temp))
                print(f"| class_weights {weights} | {method} | {metrics['ece']:.4f} | {metrics['roc_auc']:.4f} | "
                      f"{metrics['log_loss']:.4f} | {seconds:.1f} |", flush=True)
        print("\n| adult auto, training seed | test ROC-AUC | seconds (whole train) |")
        print("|---|---|---|")
        scores = []
        for seed in (0, 1, 2):
            config = our_config("adult", "auto", "init")
            config["training"]["seed"] = seed
            config["name"] = f"adult-seed-{seed}"
            metrics, seconds = run_modelmill(config, Path(temp))
            scores.append(metrics["roc_auc"])
            print(f"| {seed} | {metrics['roc_auc']:.4f} | {seconds:.1f} |", flush=True)
        print(f"\nmedian ROC-AUC over training seeds: {statistics.median(scores):.4f}")


if __name__ == "__main__":
    main()
