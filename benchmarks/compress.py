"""Compression against float32, on the same test rows.

    .venv/bin/python benchmarks/compress.py [--adult BUNDLE] [--mnist BUNDLE] [--rounds 5]

Trains the adult `mlp` and the MNIST `fast` CNN (or takes the bundles given) and compresses
each with `modelmill compress` behind its default gate (--max-drop 0.005 on the metric the
model was chosen by, on the original test split):

- adult: int8 (dynamic, an ONNX graph on ONNX Runtime) and bfloat16 weights;
- MNIST: int8 (static, calibrated on 512 training images), and structured pruning of half
  the neurons and channels, without and with one epoch of fine-tuning.

For each model: the metric on the test split, the model's bytes in the bundle, the forward
pass alone at batch 64 and 10,000 (the runtime's `raw` on the same input tensors) and end to
end beside it (`Predictor.predict` on a frame of that many test rows: transforms, model,
postprocessing), medians of interleaved rounds, each against the float32 bundle on eager
PyTorch, and the
float32 graph on ONNX Runtime beside it (so the part of a gain that is the runtime's, not
the compression's, shows). A compression the gate refuses is listed with its figures.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compression_common import (BATCHES, arguments, bundles, example_folder, interleaved, machine, test_rows,  # noqa: E402
                                tiled)

PLANS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "adult": [("int8", "int8", {}), ("bfloat16 weights", "bfloat16", {})],
    "mnist": [("int8 (static)", "int8", {}), ("pruned 50%", "prune", {"sparsity": 0.5}),
              ("pruned 50% + 1 epoch", "prune", {"sparsity": 0.5, "finetune_epochs": 1})],
}


def main() -> None:
    args = arguments(__doc__)
    from modelmill.api import load
    from modelmill.bundle import read_bundle
    from modelmill.compression.compress import Options, compress
    from modelmill.compression.export import export
    from modelmill.compression.gate import GateRefused, artifacts_size, gate_metric, measure

    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for name, bundle in bundles(work, args.adult, args.mnist).items():
            bundle = bundle.resolve()
            rows = test_rows(bundle, name)
            models: dict[str, Any] = {"float32 (PyTorch)": bundle}
            with example_folder(name):
                models["float32 (ONNX Runtime)"] = export(bundle, work / f"{name}-onnx")
                for label, method, settings in PLANS[name]:
                    try:
                        models[label] = compress(bundle, work / f"{name}-{method}-{len(models)}", method=method,
                                                 options=Options(**settings))
                    except GateRefused as refused:
                        models[label] = refused
            loaded = {label: load(path, runtime="onnxruntime" if "ONNX Runtime" in label else None).parts
                      for label, path in models.items() if isinstance(path, Path)}
            base = loaded["float32 (PyTorch)"]
            metric = gate_metric(base, None)
            print(f"\n{name}: {len(rows):,} test rows, {metric}")
            inputs = base.inputs(rows)
            timings = {batch: interleaved({label: (lambda p=p, t=tiled(inputs, batch): p.runtime.raw(t, None))
                                           for label, p in loaded.items()},
                                          rounds=args.rounds, repeats=40 if batch <= 64 else 2)
                       for batch in BATCHES}
            frames = {batch: rows.sample(n=batch, replace=batch > len(rows), random_state=0) for batch in BATCHES}
            whole = {batch: interleaved({label: (lambda p=p, f=frames[batch]: p.predict(f)) for label, p in loaded.items()},
                                        rounds=args.rounds, repeats=20 if batch <= 64 else 1)
                     for batch in BATCHES}
            float_bytes = artifacts_size(read_bundle(bundle).model_artifacts())
            print(f"{'':26}{metric:>10}{'bytes':>11}{'× size':>8}" +
                  "".join(f"{'ms @ ' + format(b, ','):>14}{'×':>7}" for b in BATCHES) +
                  "".join(f"{'e2e ms @ ' + format(b, ','):>16}{'×':>7}" for b in BATCHES))
            for label, path in models.items():
                if not isinstance(path, Path):
                    print(f"{label:<26}refused by the gate: {' '.join(str(path).split())[:160]}")
                    continue
                predictor = loaded[label]
                size = artifacts_size(read_bundle(path).model_artifacts(
                    "model-onnxruntime" if "ONNX Runtime" in label else "model"))
                value = measure(predictor, rows, metric, size, latency=False).value
                line = f"{label:<26}{value:>10.4f}{size:>11,}{size / float_bytes:>8.2f}"
                for batch in BATCHES:
                    ms = timings[batch][label]
                    line += f"{ms:>14.3f}{ms / timings[batch]['float32 (PyTorch)']:>7.2f}"
                for batch in BATCHES:
                    ms = whole[batch][label]
                    line += f"{ms:>16.3f}{ms / whole[batch]['float32 (PyTorch)']:>7.2f}"
                print(line)


if __name__ == "__main__":
    main()
