"""Outputs of frozen encoders, kept on disk between runs.

A frozen encoder's output depends only on its weights and its input, so it is computed once
per data set: within a run (the trainer encodes the training and validation rows once, not
every epoch) and across runs (``modelmill compare`` or a re-run finds it here). The key is a
hash of the encoder's class, its settings and every weight, and of the input tensor; the
files live in ``$MODELMILL_CACHE/embeddings`` as safetensors.

An encrypted run keeps them in memory only (``persist=False``): the trainer already computes
them once per run, and a cache entry, sealed or not, would be a lasting copy of what the
training rows look like to the encoder, outside the run, whose name (a hash of the input)
would confirm to anyone holding a guess of the data that it was trained on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from modelmill.data.datasets import cache_dir
from modelmill.encoders.tuning import TunableEncoder
from modelmill.files import atomic_path

log = logging.getLogger("modelmill")


def fingerprint(encoder: nn.Module) -> str:
    """The encoder's class, the settings besides its weights that change its output (its
    tuning plan's ``cache_key``), and every weight."""
    digest = hashlib.sha256(type(encoder).__qualname__.encode())
    digest.update((encoder.tuning.cache_key if isinstance(encoder, TunableEncoder) else "").encode())
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cached_encoding(encoder: nn.Module, inputs: torch.Tensor, compute: Callable[[], torch.Tensor],
                    folder: Path | None = None, *, persist: bool = True) -> torch.Tensor:
    """``compute()`` (the encoder's output for ``inputs``), from the cache when it is there;
    ``persist=False`` (an encrypted run): ``compute()``, and the disk cache is neither read nor
    written."""
    if not persist:
        return compute()
    digest = hashlib.sha256(fingerprint(encoder).encode())
    digest.update(str((inputs.dtype, tuple(inputs.shape))).encode())
    digest.update(inputs.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    path = (folder or cache_dir() / "embeddings") / f"{digest.hexdigest()[:40]}.safetensors"
    if path.is_file():
        try:
            return load_file(path)["encoded"].to(inputs.device)
        except Exception as error:  # a damaged cache file is recomputed, never trusted
            log.warning("ignoring the damaged embedding cache file %s: %s", path, error)
    encoded = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            save_file({"encoded": encoded.detach().cpu().contiguous()}, str(temporary))
    except OSError as error:  # a read-only cache costs time, not the run
        log.warning("could not keep the embeddings in %s: %s", path.parent, error)
    return encoded
