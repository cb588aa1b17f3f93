"""ONNX Runtime against eager PyTorch, on the same bundle's model.

    .venv/bin/python benchmarks/export.py [--adult BUNDLE] [--mnist BUNDLE] [--rounds 5]

Trains the adult `mlp` and the MNIST `fast` CNN (or takes the bundles given), exports each
with `modelmill export` (checked on the original test split), then times on the same input
tensors: the model's forward pass alone at batch 64 and 10,000 (the runtimes' `raw`: eager
PyTorch in inference mode, and ONNX Runtime on the CPU with the same threads), and end to
end beside it (`Predictor.predict` on a frame: the feature transforms, the model and the
postprocessing). Also the largest difference between the two runtimes' outputs on the whole
test split. Timings are medians of interleaved rounds.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compression_common import (BATCHES, arguments, bundles, example_folder, interleaved, machine, test_rows,  # noqa: E402
                                tiled)


def main() -> None:
    args = arguments(__doc__)
    from modelmill.api import load
    from modelmill.compression.export import export

    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for name, bundle in bundles(work, args.adult, args.mnist).items():
            rows = test_rows(bundle, name)
            with example_folder(name):
                exported = export(bundle.resolve(), work / f"{name}-onnx")
            eager, onnx = load(exported, runtime="torch").parts, load(exported, runtime="onnxruntime").parts
            inputs = eager.inputs(rows)
            difference = float(np.abs(eager.runtime.raw(inputs, None).numpy()
                                      - onnx.runtime.raw(inputs, None).numpy()).max())
            print(f"\n{name}: {len(rows):,} test rows; largest |ONNX Runtime - PyTorch| on the raw outputs: "
                  f"{difference:.2e}")
            print(f"{'':24}{'PyTorch ms':>12}{'ORT ms':>10}{'ORT speed-up':>14}")
            for batch in BATCHES:
                tensors = tiled(inputs, batch)
                repeats = 40 if batch <= 64 else 2
                forward = interleaved({"torch": lambda: eager.runtime.raw(tensors, None),
                                       "onnx": lambda: onnx.runtime.raw(tensors, None)},
                                      rounds=args.rounds, repeats=repeats)
                frame = rows.sample(n=batch, replace=batch > len(rows), random_state=0)
                whole = interleaved({"torch": lambda: eager.predict(frame), "onnx": lambda: onnx.predict(frame)},
                                    rounds=args.rounds, repeats=max(1, repeats // 2))
                for what, timing in (("forward", forward), ("end to end", whole)):
                    print(f"{what + ' @ ' + format(batch, ','):<24}{timing['torch']:>12.3f}{timing['onnx']:>10.3f}"
                          f"{timing['torch'] / timing['onnx']:>13.2f}x")


if __name__ == "__main__":
    main()
