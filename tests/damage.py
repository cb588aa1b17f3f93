"""Bundles damaged on purpose, for the tests of what serving and the dashboard do with a
broken version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def flip_one_byte(path: Path) -> None:
    """A changed byte: the bundle fails verification."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def unbuildable(version: Path) -> None:
    """Weights of another shape, with their hash in the manifest: the bundle verifies, but
    its model cannot be built from them."""
    import torch

    from modelmill.bundle.weights import encode_weights

    data = encode_weights({"bogus": torch.zeros(3)})
    (version / "weights.safetensors").write_bytes(data)
    manifest = json.loads((version / "manifest.json").read_bytes())
    manifest["files"]["weights.safetensors"] = hashlib.sha256(data).hexdigest()
    (version / "manifest.json").write_text(json.dumps(manifest))
