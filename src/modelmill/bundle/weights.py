"""Tensors in a bundle: safetensors only; a pickle is refused before anything parses it.
torch is imported when tensors are first encoded or parsed, so that reading a bundle's
manifest and config (to check a path, or a server's settings) does not pay for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelmill.errors import BundleError

if TYPE_CHECKING:
    import torch


def encode_weights(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save as save_safetensors

    return save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def parse_weights(data: bytes, *, where: Path) -> dict[str, torch.Tensor]:
    """Safetensors bytes → tensors. A pickle (or a torch.save zip) is refused before parsing.
    Safetensors begins with its header's length (8 bytes, little-endian) and then ``{``; the
    length's first byte may well be 0x80 (or spell "PK"), so the shape decides first."""
    safetensors_shaped = len(data) >= 9 and data[8:9] == b"{"
    if not safetensors_shaped and (data[:1] == b"\x80" or data[:2] == b"PK"):
        raise BundleError(
            f"{where} is a pickle or torch.save file, not safetensors; modelmill never unpickles "
            "(a pickle can run code). Fix: re-create the bundle with modelmill"
        )
    if not safetensors_shaped:
        raise BundleError(f"{where} is not a safetensors file")
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError) as exc:
        raise BundleError(f"{where} cannot be read as safetensors: {exc}") from None
