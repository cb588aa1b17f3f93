"""Checkpoints: one safetensors file holding the weights, the optimiser and scheduler
state and the loop's own state, written atomically (temp file, fsync, rename), so a run
killed mid-write leaves the previous checkpoint usable. Nothing is pickled: tensors go
into safetensors, everything else (RNG-free loop state, numbers) into its JSON metadata.

An encrypted run's checkpoint (``key=``) is serialised in memory and sealed as
``checkpoints/<file>`` (:mod:`modelmill.encryption`): its plaintext never reaches a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save, save_file

from modelmill.encryption import is_sealed, seal, unseal
from modelmill.errors import EncryptionKeyError, ModelError
from modelmill.files import atomic_path, atomic_write_bytes


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


def sealed_name(path: Path) -> str:
    """The name a checkpoint is sealed as: its place in the run (``checkpoints/last.safetensors``)."""
    return f"{path.parent.name}/{path.name}"


def save_checkpoint(path: Path, parts: dict[str, Any], *, key: bytes | None = None) -> None:
    """``parts``: name → state dict or plain data (e.g. model, best, optimizer, scheduler, loop);
    sealed with ``key`` when given."""
    tensors: dict[str, torch.Tensor] = {}
    tree = split_tensors(parts, tensors, "t")
    metadata = {"modelmill.checkpoint": json.dumps(tree)}
    if key is not None:
        atomic_write_bytes(path, seal(save(tensors, metadata=metadata), key, sealed_name(path), path))
        return
    with atomic_path(path) as temp:
        save_file(tensors, str(temp), metadata=metadata)


def load_checkpoint(path: Path, *, key: bytes | None = None) -> dict[str, Any]:
    """A checkpoint's parts; an encrypted run's (``key``) is decrypted in memory.

    Raises:
        EncryptionError: the checkpoint is encrypted and no key is given, or it fails to open
            (another key, changed bytes), or a key is given and the checkpoint is in clear. No key
            and another key are an EncryptionKeyError.
        ModelError: the checkpoint cannot be parsed.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"checkpoint {path} cannot be read ({exc}); start without --resume") from None
    if is_sealed(data) and key is None:
        raise EncryptionKeyError(f"checkpoint {path} is encrypted: resume the run with its key. Fix: add "
                                 "--key-file FILE, or --encrypt with MODELMILL_ENCRYPTION_KEY set")
    if key is not None:
        data = unseal(data, key, sealed_name(path), path)
    try:
        tensors = load(data)
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_size])
        tree = json.loads(header["__metadata__"]["modelmill.checkpoint"])
    except (SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"checkpoint {path} cannot be read ({exc}); start without --resume") from None
    result: dict[str, Any] = join_tensors(tree, tensors)
    return result
