"""MNIST on a CPU: time to 99.0% test accuracy.

Ours: `modelmill train examples/mnist/fast.yaml` — the whole command, wall clock (start-up,
reading the IDX files, cleaning, training, test metrics, plots, report, bundle), as a
subprocess. The peer: the textbook Keras network written in plain PyTorch here (Glorot
init, Adam 1e-3, batch 64, shuffled each epoch), evaluated on the 10,000 test images
after every epoch; its time runs from reading the files to the end of the first epoch at
≥ 99.0% (evaluation time included). Median over seeds; same threads for both.

    .venv/bin/python examples/mnist/fetch.py
    .venv/bin/python benchmarks/mnist_cpu.py [--seeds 0 1 2] [--peer-epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT / "examples/mnist"
GOAL = 0.99


def idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def textbook() -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    for module in net:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return net


def peer(seed: int, max_epochs: int) -> dict[str, float]:
    """The textbook network, trained the textbook way; evaluated after every epoch."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    data = MNIST / "data"
    x = torch.from_numpy(idx(data / "train-images-idx3-ubyte").copy()).float().div_(255).unsqueeze(1)
    y = torch.from_numpy(idx(data / "train-labels-idx1-ubyte").astype(np.int64))
    tx = torch.from_numpy(idx(data / "t10k-images-idx3-ubyte").copy()).float().div_(255).unsqueeze(1)
    ty = torch.from_numpy(idx(data / "t10k-labels-idx1-ubyte").astype(np.int64))
    net = textbook()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    accuracy = 0.0
    for epoch in range(1, max_epochs + 1):
        net.train()
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            accuracy = float((torch.cat([net(b).argmax(1) for b in tx.split(1000)]) == ty).float().mean())
        print(f"  peer seed {seed} epoch {epoch}: test accuracy {accuracy:.4f} at "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        if accuracy >= GOAL:
            return {"seconds": time.perf_counter() - started, "epochs": epoch, "accuracy": accuracy}
    return {"seconds": float("nan"), "epochs": max_epochs, "accuracy": accuracy}


def ours(seed: int, epochs: int | None, workdir: Path) -> dict[str, float]:
    """`modelmill train fast.yaml` with another seed (and epochs), timed as a whole process."""
    config = yaml.safe_load((MNIST / "fast.yaml").read_text())
    config["training"]["seed"] = seed
    if epochs is not None:
        config["training"]["epochs"] = epochs
    config["data"]["source"] = str(MNIST / "data/train-images-idx3-ubyte")
    config["data"]["split"]["test_source"] = str(MNIST / "data/t10k-images-idx3-ubyte")
    path = workdir / f"fast-{seed}-{epochs}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "modelmill"), "train", str(path), "--runs",
                    str(workdir / "runs")], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    metrics = json.loads((workdir / "runs" / config["name"] / "latest" / "bundle" / "metrics.json").read_text())
    print(f"  modelmill seed {seed}: test accuracy {metrics['accuracy']:.4f} in {seconds:.1f} s", flush=True)
    return {"seconds": seconds, "accuracy": float(metrics["accuracy"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--peer-epochs", type=int, default=10)
    parser.add_argument("--budget-epochs", type=int, default=5, help="fast.yaml epochs for the 60-second run")
    args = parser.parse_args()
    if not (MNIST / "data/train-images-idx3-ubyte").is_file():
        raise SystemExit("MNIST is not fetched. Fix: .venv/bin/python examples/mnist/fetch.py")
    torch.set_num_threads(os.cpu_count() or 1)
    workdir = Path(tempfile.mkdtemp(prefix="modelmill-mnist-bench-"))
    our_runs = [ours(seed, None, workdir) for seed in args.seeds]
    peer_runs = [peer(seed, args.peer_epochs) for seed in args.seeds]
    budget = ours(args.seeds[0], args.budget_epochs, workdir)
    reached = [r for r in our_runs if r["accuracy"] >= GOAL]
    our_time = statistics.median(r["seconds"] for r in our_runs)
    peer_time = statistics.median(r["seconds"] for r in peer_runs)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"modelmill fast.yaml: median {our_time:.1f} s, test accuracy "
          + ", ".join(f"{r['accuracy']:.4f}" for r in our_runs) + f" ({len(reached)}/{len(our_runs)} ≥ 99.0%)")
    print(f"plain PyTorch textbook: median time to 99.0% {peer_time:.1f} s, epochs "
          + ", ".join(str(int(r["epochs"])) for r in peer_runs))
    print(f"ratio: {our_time / peer_time:.2f}")
    within = "within" if budget["seconds"] <= 60 else "NOT within"
    print(f"fast.yaml with {args.budget_epochs} epochs: {budget['accuracy']:.4f} in {budget['seconds']:.1f} s "
          f"({within} 60 s)")


if __name__ == "__main__":
    main()
