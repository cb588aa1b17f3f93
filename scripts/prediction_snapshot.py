"""Bit-for-bit checks of a refactoring: train an example, predict a fixed frame from its
bundle, keep the predictions (exact floats) — once on the old code, once on the new, on
the same quiet machine — then compare.

    .venv/bin/python scripts/prediction_snapshot.py take adult OUT_DIR          # adult, german, mnist, reviews
    PYTHONPATH=<old checkout>/src .venv/bin/python scripts/prediction_snapshot.py take adult OLD_DIR
    .venv/bin/python scripts/prediction_snapshot.py compare OLD_DIR OUT_DIR

The frame is the whole data set (adult, German credit) or the test file (MNIST, reviews).
Run one example per process and nothing else on the machine: with another process busy,
torch's CPU kernels may split their sums differently, and the last bits of the weights
(and a few predictions) differ between two runs of the same code.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"adult": "examples/adult/adult.yaml", "german": "examples/german_credit/german_credit.yaml",
           "mnist": "examples/mnist/fast.yaml", "reviews": "examples/reviews/reviews.yaml"}


def take(example: str, out: Path) -> None:
    import modelmill
    from modelmill.api import Pipeline

    config = ROOT / CONFIGS[example]
    pipeline = Pipeline.from_yaml(config)
    pipeline.config.training.progress = False
    pipeline.fit()
    bundle = pipeline.save(Path(tempfile.mkdtemp()) / "bundle")
    split = pipeline.config.data.split
    if split.method != "files":
        frame = pipeline.read()
    elif str(split.test_source).startswith("dataset:"):
        frame = pipeline.read(split.test_source)
    else:
        frame = pipeline.read(str(config.parent / str(split.test_source)))
    predicted = modelmill.load(bundle).predict(frame)
    arrays = {c: predicted[c].to_numpy() for c in predicted.columns}
    np.savez(out / f"{example}.npz", **{c: a.astype(str) if a.dtype == object else a for c, a in arrays.items()})
    metrics = {k: v for k, v in pipeline.metrics_.items() if isinstance(v, float)}
    (out / f"{example}-metrics.json").write_text(json.dumps(metrics, indent=1))
    print(example, len(frame), "rows", metrics)


def compare(old: Path, new: Path) -> int:
    differing = 0
    for path in sorted(old.glob("*.npz")):
        a, b = np.load(path), np.load(new / path.name)
        same = sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
        worst = max((float(np.max(np.abs(a[k] - b[k]))) for k in a.files if a[k].dtype.kind == "f"), default=0.0)
        print(f"{path.stem}: {len(a[a.files[0]])} rows, bit-identical: {same}, largest difference {worst:.3g}")
        differing += not same
    return differing


if __name__ == "__main__":
    if sys.argv[1:2] == ["take"]:
        Path(sys.argv[3]).mkdir(parents=True, exist_ok=True)
        take(sys.argv[2], Path(sys.argv[3]))
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
