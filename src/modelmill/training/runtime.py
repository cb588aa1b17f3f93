"""Where and how fast: devices and CPU threads."""

from __future__ import annotations

import os

import torch

from modelmill.errors import ConfigError


def physical_cores() -> int:
    """Cores this process may use (affinity-aware), the right default for intra-op threads."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int | None) -> None:
    wanted = threads or physical_cores()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device is 'cuda' but no CUDA GPU is available; use 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
