"""Checkpoints: one safetensors file holding the weights, the optimiser and scheduler
state and the loop's own state, written atomically (temp file, fsync, rename), so a run
killed mid-write leaves the previous checkpoint usable. Nothing is pickled: tensors go
into safetensors, everything else (RNG-free loop state, numbers) into its JSON metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from modelmill.errors import ModelError
from modelmill.files import atomic_path


def split_tensors(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """Replace every tensor in a nested structure by a reference, collecting the tensors.
    Dicts with non-string keys (optimiser state is keyed by int) keep their key types."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}#{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_tensors(v, tensors, prefix) for k, v in obj.items()}
        return {"__items__": [[k, split_tensors(v, tensors, prefix)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__": [split_tensors(v, tensors, prefix) for v in obj]} if isinstance(obj, tuple) \
            else [split_tensors(v, tensors, prefix) for v in obj]
    return obj


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_tensors`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: join_tensors(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(join_tensors(v, tensors) for v in obj["__tuple__"])
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: Path, parts: dict[str, Any]) -> None:
    """``parts``: name → state dict or plain data (e.g. model, best, optimizer, scheduler, loop)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = split_tensors(parts, tensors, "t")
    metadata = {"modelmill.checkpoint": json.dumps(tree)}
    with atomic_path(path) as temp:
        save_file(tensors, str(temp), metadata=metadata)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_size))
        tree = json.loads(header["__metadata__"]["modelmill.checkpoint"])
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise ModelError(f"checkpoint {path} cannot be read ({exc}); start without --resume") from None
    result: dict[str, Any] = join_tensors(tree, tensors)
    return result
