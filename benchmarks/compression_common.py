"""What benchmarks/export.py and benchmarks/compress.py share: the two bundles (adult `mlp`,
MNIST `fast` CNN), their test rows, and interleaved timing."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
BATCHES = (64, 10_000)


def arguments(description: str | None) -> argparse.Namespace:
    """The options of the compression benchmarks: the two bundles (else trained) and the rounds."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adult", type=Path, help="a bundle of examples/adult/adult.yaml")
    parser.add_argument("--mnist", type=Path, help="a bundle of examples/mnist/fast.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


def train(config: Path, runs: Path) -> Path:
    """Train an example config with the CLI (from the config's folder); its bundle."""
    subprocess.run([str(BIN / "modelmill"), "train", str(config), "--runs", str(runs)], cwd=config.parent,
                   check=True, stdout=subprocess.DEVNULL)
    name = next(p for p in runs.iterdir() if p.is_dir())
    return name / "latest" / "bundle"


def bundles(workdir: Path, adult: Path | None, mnist: Path | None) -> dict[str, Path]:
    """The adult and MNIST bundles: given, or trained here (MNIST needs examples/mnist/fetch.py first)."""
    mnist_data = ROOT / "examples" / "mnist" / "data" / "t10k-images-idx3-ubyte"
    if mnist is None and not mnist_data.exists():
        subprocess.run([str(BIN / "python"), str(ROOT / "examples" / "mnist" / "fetch.py")], check=True)
    return {"adult": adult or train(ROOT / "examples" / "adult" / "adult.yaml", workdir / "adult-runs"),
            "mnist": mnist or train(ROOT / "examples" / "mnist" / "fast.yaml", workdir / "mnist-runs")}


@contextmanager
def example_folder(name: str) -> Iterator[None]:
    """In the example's folder: the bundle's relative data sources are read from there."""
    here = Path.cwd()
    os.chdir(ROOT / "examples" / name)
    try:
        yield
    finally:
        os.chdir(here)


def test_rows(bundle: Path, name: str) -> pd.DataFrame:
    """The bundle's original test split, read as compress and export read it."""
    from modelmill.bundle import read_bundle
    from modelmill.compression.rows import gate_rows

    with example_folder(name):
        return gate_rows(read_bundle(bundle.resolve()), None).frame


def tiled(inputs: list[torch.Tensor], rows: int) -> list[torch.Tensor]:
    """The input tensors repeated up to ``rows`` rows (a batch larger than the test split)."""
    have = int(inputs[0].shape[0])
    times = -(-rows // have)
    return [torch.cat([x] * times)[:rows] if times > 1 else x[:rows] for x in inputs]


def interleaved(calls: dict[str, Callable[[], object]], *, rounds: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per call of each, measured in alternating rounds (the order flips
    each round), so that a machine getting busier hurts all alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # first-call costs out of the way
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            for _ in range(repeats):
                started = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def machine() -> str:
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {sys.version.split()[0]}"
