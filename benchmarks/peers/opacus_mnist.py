"""The peer of benchmarks/privacy.py's MNIST arm: Opacus's own MNIST example (examples/mnist.py
of the Opacus repository: SampleConvNet, plain SGD, ``PrivacyEngine.make_private`` with its
Poisson sampling, CrossEntropyLoss, the test accuracy of the last epoch's weights) written out
with plain PyTorch and Opacus on the same IDX files, so that the published figure (96.78% ±
0.21% at ε = 3.01: ``-n 60 --lr=.15 --sigma=1.1 -c=1.0 -sr=0.004``) is measured on this machine
with this Opacus, beside ours, rather than taken on trust.

    .venv/bin/python benchmarks/peers/opacus_mnist.py [--epochs 60] [--sigma 1.1 | --epsilon 3]
        [--rows 60000] [--batch 240] [--lr 0.15] [--momentum 0] [--clip 1] [--activation relu|tanh]
        [--seed 0] [--out record.json]

Nothing of modelmill is imported: the images are read from examples/mnist/data (fetched by
examples/mnist/fetch.py) with numpy, and standardised by Opacus's constants (0.1307, 0.3081).
``--rows`` takes that many training images (a seeded sample), to match our 5% validation hold-out
(57,000); ``--epsilon`` calibrates σ for that ε over the planned epochs as our trainer does
(``make_private_with_epsilon``, the ``rdp`` accountant), instead of the published fixed σ. The
accountant is ``rdp`` either way, as in our benchmark's arms (the example leaves Opacus's default,
``prv``): it changes the ε reported for a fixed σ, not the training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DATA = Path(__file__).resolve().parents[2] / "examples/mnist/data"
MEAN, STD = 0.1307, 0.3081  # Opacus's example's constants


def idx(path: Path) -> np.ndarray:
    """An IDX file's array: a big-endian header (magic: 0, 0, type, dimensions; then each size)."""
    raw = path.read_bytes()
    dimensions = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dimensions))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def images(name: str) -> torch.Tensor:
    pixels = torch.from_numpy(idx(DATA / name).astype(np.float32) / 255.0)
    return ((pixels - MEAN) / STD).unsqueeze(1)


def labels(name: str) -> torch.Tensor:
    return torch.from_numpy(idx(DATA / name).astype(np.int64))


class SampleConvNet(nn.Module):
    """Opacus's example network: 26,010 weights."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.act = torch.tanh if activation == "tanh" else F.relu
        self.conv1 = nn.Conv2d(1, 16, 8, 2, padding=3)
        self.conv2 = nn.Conv2d(16, 32, 4, 2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.act(self.conv1(x)), 2, 1)
        x = F.max_pool2d(self.act(self.conv2(x)), 2, 1)
        return self.fc2(self.act(self.fc1(x.flatten(1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--sigma", type=float, default=1.1, help="noise multiplier (1.1: the published run)")
    parser.add_argument("--epsilon", type=float, help="calibrate σ for this ε instead (as our trainer does)")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--rows", type=int, default=60_000, help="training images used (a seeded sample)")
    parser.add_argument("--batch", type=int, default=240, help="expected rows a batch (240: -sr=0.004)")
    parser.add_argument("--lr", type=float, default=0.15)
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0: the example's)")
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--activation", choices=["relu", "tanh"], default="relu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from opacus import PrivacyEngine

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    train_x, train_y = images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte")
    if args.rows < len(train_x):
        keep = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed))[: args.rows]
        train_x, train_y = train_x[keep], train_y[keep]
    test_x, test_y = images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train_x, train_y), batch_size=args.batch)
    model = SampleConvNet(args.activation)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    engine = PrivacyEngine(accountant="rdp")
    if args.epsilon is not None:
        model, optimizer, loader = engine.make_private_with_epsilon(
            module=model, optimizer=optimizer, data_loader=loader, target_epsilon=args.epsilon,
            target_delta=args.delta, epochs=args.epochs, max_grad_norm=args.clip)
    else:
        model, optimizer, loader = engine.make_private(module=model, optimizer=optimizer, data_loader=loader,
                                                       noise_multiplier=args.sigma, max_grad_norm=args.clip)
    criterion = nn.CrossEntropyLoss()
    started, steps = time.perf_counter(), 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        losses = []
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            steps += 1
        print(f"epoch {epoch}: loss {np.mean(losses):.4f}, ε {engine.get_epsilon(args.delta):.3f}", flush=True)
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(test_x[i:i + 2048]).argmax(1) == test_y[i:i + 2048]).sum())
                      for i in range(0, len(test_x), 2048))
    record = {"arm": "Opacus examples/mnist.py on this machine", "accuracy": round(correct / len(test_x), 4),
              "epsilon_spent": round(engine.get_epsilon(args.delta), 4), "accountant": "rdp",
              "noise_multiplier": optimizer.noise_multiplier,
              "sample_rate": round(float(loader.sample_rate), 6), "steps": steps, "train_rows": len(train_x),
              "epochs": args.epochs, "seconds_per_epoch": round(seconds / args.epochs, 2),
              "activation": args.activation, "lr": args.lr, "momentum": args.momentum, "clip": args.clip,
              "seed": args.seed,
              "torch": torch.__version__, "opacus": __import__("opacus").__version__}
    print(json.dumps(record), flush=True)
    if args.out:
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
