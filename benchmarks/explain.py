"""Explanations: do they add up, do they agree, do they find the signal?

    .venv/bin/python benchmarks/explain.py [--png docs/mnist-saliency.png]

Trains (with the CLI, into a temporary folder) adult `mlp` with three training seeds, adult
`gbdt`, the MNIST `fast` CNN, and `mlp`, `gbdt` and `auto` on a generated table where only
2 of 10 numeric columns carry signal, then measures:

1. permutation importance of adult `mlp` on 2,000 test rows for each seed, Spearman between
   the seeds (bar ≥ 0.9), and against LightGBM's own gain importance of adult `gbdt` (a peer);
2. Integrated Gradients' completeness |Σ attributions − (f(x) − f(baseline))| on 200 adult
   test rows and 100 MNIST test images (per column, and the pixel saliency maps), bar ≤ 0.01,
   with the steps used and seconds per record;
3. TreeSHAP: |Σ contributions + expected − raw| of adult `gbdt` on the test split (bar ≤ 1e-6);
4. the ranks of the two signal columns in the 2-of-10 table's importance;
5. a grid of MNIST test digits with their saliency maps (``--png``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compression_common import ROOT, example_folder, machine, test_rows, train  # noqa: E402

ADULT = ROOT / "examples" / "adult" / "adult.yaml"
MNIST = ROOT / "examples" / "mnist" / "fast.yaml"


def variant(base: Path, folder: Path, **changes: Any) -> Path:
    """A copy of an example config in ``folder`` with top-level sections updated."""
    config = yaml.safe_load(base.read_text())
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(config.get(key), dict) else value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / base.name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def trained(config: Path, runs: Path) -> tuple[Path, float]:
    started = time.perf_counter()
    bundle = train(config, runs).resolve()
    return bundle, time.perf_counter() - started


def rows_of(bundle: Path, folder: Path) -> pd.DataFrame:
    """The bundle's test split, read from the folder its config was trained in."""
    from modelmill.bundle import read_bundle
    from modelmill.compression.rows import gate_rows

    with example_folder(str(folder)):  # an absolute folder: Path joins to it
        return gate_rows(read_bundle(bundle), None).frame


def spearman(a: dict[str, tuple[float, float]] | dict[str, float], b: dict[str, Any]) -> float:
    from scipy.stats import spearmanr

    names = list(a)
    first = [a[n][0] if isinstance(a[n], tuple) else a[n] for n in names]
    second = [b[n][0] if isinstance(b[n], tuple) else b[n] for n in names]
    return float(spearmanr(first, second).statistic)


def gain_importance(predictor: Any, rows: pd.DataFrame) -> dict[str, float]:
    """LightGBM's total gain per input column (a column with several raw columns: their sum)."""
    widths = [int(t.shape[1]) for t in predictor.inputs(rows.head(5))]
    gains = predictor.runtime.module.booster.feature_importance(importance_type="gain")
    bounds = np.cumsum([0] + widths)
    return {f.name: float(gains[bounds[i]:bounds[i + 1]].sum()) for i, f in enumerate(predictor.features)}


def adult_importance(work: Path, out: dict[str, Any]) -> dict[str, Path]:
    from modelmill.api import load
    from modelmill.explain import importance

    bundles: dict[str, Path] = {}
    ranked = {}
    for seed in (0, 1, 2):
        folder = work / f"adult-seed{seed}"
        bundle, seconds = trained(variant(ADULT, folder, training={"seed": seed}), folder / "runs")
        bundles[f"mlp{seed}"] = bundle
        rows = rows_of(bundle, folder)
        started = time.perf_counter()
        ranked[seed] = importance(load(bundle).parts, rows, repeats=5, seed=0, rows=2000)
        print(f"adult mlp seed {seed}: trained {seconds:.0f} s, importance on 2,000 of {len(rows):,} test rows "
              f"{time.perf_counter() - started:.1f} s; top 5: "
              + ", ".join(f"{c} {m:.4f}±{s:.4f}" for c, (m, s) in list(ranked[seed].items())[:5]))
    pairs = {f"{a}-{b}": spearman(ranked[a], ranked[b]) for a, b in combinations(ranked, 2)}
    print("  Spearman between seeds: " + ", ".join(f"{k} {v:.3f}" for k, v in pairs.items())
          + f"  (bar ≥ 0.9: {'met' if min(pairs.values()) >= 0.9 else 'NOT met'})")
    folder = work / "adult-gbdt"
    bundle, seconds = trained(variant(ADULT, folder, model={"type": "gbdt"}), folder / "runs")
    bundles["gbdt"] = bundle
    gbdt = load(bundle).parts
    gains = gain_importance(gbdt, rows_of(bundle, folder))
    top = sorted(gains, key=lambda c: -gains[c])[:5]
    peer = {seed: spearman(ranked[seed], gains) for seed in ranked}
    print(f"adult gbdt: trained {seconds:.0f} s; LightGBM gain top 5: {', '.join(top)}; Spearman mlp permutation "
          f"vs gbdt gain: " + ", ".join(f"seed {s} {v:.3f}" for s, v in peer.items()))
    out["adult_importance"] = {"ranked": ranked, "seeds": pairs, "gain": gains, "peer": peer}
    out["adult_gbdt_folder"] = folder
    return bundles


def completeness(bundles: dict[str, Path], work: Path, mnist: Path, out: dict[str, Any]) -> None:
    from modelmill.api import load
    from modelmill.bundle import read_bundle
    from modelmill.explain import attributions
    from modelmill.explain.maps import image_saliency

    adult = bundles["mlp0"]
    rows = rows_of(adult, work / "adult-seed0").head(200)
    started = time.perf_counter()
    e = attributions(load(adult).parts, rows, profile=read_bundle(adult).profile(), steps="auto")
    per = (time.perf_counter() - started) / len(rows)
    print(f"adult mlp IG, 200 test rows: gap max {e.gap.max():.2g} mean {e.gap.mean():.2g}, steps "
          f"{_steps(e.steps)}, {per * 1000:.1f} ms/record (bar ≤ 0.01: {'met' if e.gap.max() <= 0.01 else 'NOT met'})")
    out["ig_adult"] = e

    test = test_rows(mnist, "mnist").head(100)
    predictor = load(mnist).parts
    with example_folder("mnist"):
        profile = read_bundle(mnist).profile()
    started = time.perf_counter()
    e = attributions(predictor, test, profile=profile, steps="auto")
    per = (time.perf_counter() - started) / len(test)
    print(f"MNIST IG per column, 100 test images: gap max {e.gap.max():.2g} mean {e.gap.mean():.2g}, steps "
          f"{_steps(e.steps)}, {per * 1000:.1f} ms/record (bar: {'met' if e.gap.max() <= 0.01 else 'NOT met'})")
    out["ig_mnist"] = e
    started = time.perf_counter()
    maps = image_saliency(predictor, test, "image")
    per = (time.perf_counter() - started) / len(test)
    print(f"MNIST saliency, 100 test images: gap max {maps.gaps.max():.2g} mean {maps.gaps.mean():.2g}, steps "
          f"{_steps(np.array(maps.steps))}, {per * 1000:.1f} ms/record "
          f"(bar: {'met' if maps.gaps.max() <= 0.01 else 'NOT met'})")
    out["maps"] = (test, maps, predictor)

    gbdt = bundles["gbdt"]
    rows = rows_of(gbdt, out["adult_gbdt_folder"])
    started = time.perf_counter()
    e = attributions(load(gbdt).parts, rows, profile=read_bundle(gbdt).profile())
    per = (time.perf_counter() - started) / len(rows)
    print(f"adult gbdt TreeSHAP, {len(rows):,} test rows: max |Σ + expected − raw| {e.gap.max():.2g}, "
          f"{per * 1e6:.0f} µs/record (bar ≤ 1e-6: {'met' if e.gap.max() <= 1e-6 else 'NOT met'})")
    out["treeshap"] = e


def _steps(steps: np.ndarray | None) -> str:
    if steps is None:
        return "-"
    values, counts = np.unique(steps, return_counts=True)
    return " ".join(f"{int(v)}×{int(c)}" for v, c in zip(values, counts))


def signal_table(work: Path, out: dict[str, Any]) -> None:
    """2,000 rows, x0…x9 standard normal; the label depends on x3 and x7 only."""
    from modelmill.api import load
    from modelmill.explain import importance

    folder = work / "signal"
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 10))
    logit = 2.0 * x[:, 3] - 2.0 * x[:, 7]
    y = rng.random(2000) < 1 / (1 + np.exp(-logit))
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(10)])
    table["y"] = np.where(y, "yes", "no")
    table.to_csv(folder / "signal.csv", index=False)
    base = {"name": "signal", "data": {"source": "signal.csv", "split": {"method": "stratified", "test": 0.2,
                                                                           "seed": 0}},
            "features": [{"name": f"x{i}", "type": "number"} for i in range(10)],
            "target": {"name": "y", "type": "binary"}}
    results = {}
    for model in ({"type": "mlp"}, {"type": "gbdt"}, {"type": "auto", "time_budget": 30}):
        sub = folder / model["type"]
        sub.mkdir()
        (sub / "signal.csv").write_bytes((folder / "signal.csv").read_bytes())
        config = sub / "signal.yaml"
        config.write_text(yaml.safe_dump({**base, "model": model}, sort_keys=False))
        bundle, seconds = trained(config, sub / "runs")
        rows = rows_of(bundle, sub)
        ranked = importance(load(bundle).parts, rows, repeats=5, seed=0)
        order = list(ranked)
        ranks = {c: order.index(c) + 1 for c in ("x3", "x7")}
        rest = max(m for c, (m, _) in ranked.items() if c not in ranks)
        ok = sorted(ranks.values()) == [1, 2]
        print(f"2-of-10 {model['type']}: trained {seconds:.0f} s; x3 rank {ranks['x3']} ({ranked['x3'][0]:.4f}), "
              f"x7 rank {ranks['x7']} ({ranked['x7'][0]:.4f}), largest other {rest:.4f} "
              f"({'met' if ok else 'NOT met'})")
        results[model["type"]] = (ranks, ranked, rest, seconds)
    out["signal"] = results


def saliency_grid(out: dict[str, Any], path: Path, count: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    test, maps, predictor = out["maps"]
    pixels = predictor.inputs(test)[0]
    pixels = pixels[0:len(test)].numpy()  # (records, c, h, w) uint8
    figure, axes = plt.subplots(2, count, figsize=(1.3 * count, 2.9), dpi=110)
    for i in range(count):
        grey = pixels[i].astype("float64").mean(axis=0)
        saliency = maps.values[i]
        bound = float(np.abs(saliency).max()) or 1.0
        axes[0, i].imshow(grey, cmap="gray")
        axes[0, i].set_title(f"label {test['label'].iloc[i] if 'label' in test else '?'}", fontsize=8)
        axes[1, i].imshow(grey, cmap="gray", alpha=0.35)
        axes[1, i].imshow(saliency, cmap="bwr", vmin=-bound, vmax=bound, alpha=0.75)
        axes[1, i].set_title(f"gap {maps.gaps[i]:.0e}", fontsize=7)
        for axis in axes[:, i]:
            axis.axis("off")
    figure.suptitle("MNIST fast CNN: Integrated Gradients on the predicted class (red: for, blue: against)",
                    fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    print(f"saliency grid: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "mnist-saliency.png")
    args = parser.parse_args()
    print(machine())
    out: dict[str, Any] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        bundles = adult_importance(work, out)
        mnist, seconds = trained(MNIST, work / "mnist-runs")
        print(f"MNIST fast: trained {seconds:.0f} s")
        completeness(bundles, work, mnist, out)
        saliency_grid(out, args.png.resolve())
        signal_table(work, out)
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
