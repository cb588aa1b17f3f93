"""The piecewise-linear encoding of a number (Gorishniy et al., 2022) as a module of the
model: a scaled value in, one value per quantile bin out (1 for bins left of the value, its
position inside its own bin, 0 right of it; the outer bins extend linearly beyond the
training range).

The encoding runs per batch inside the model rather than in ``transform``, so that the
tensors of a table hold one value per number, not one per bin: 16 times less memory with
the default 16 bins, on the machine that trains and in a cluster's object store.

Each bin's value is ``clamp((x - left) / width, lower, upper)``, with bounds 0 and 1 except
below the first bin and above the last (unbounded there): the same values as the bin search
``NumberFeature`` does for a bundle that encodes in ``transform``, made of element-wise
operations that every runtime (ONNX included) has.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PiecewiseLinear(nn.Module):
    """(batch, 1) scaled values, or (batch, 2) with the missing indicator after them →
    (batch, bins) or (batch, bins + 1). Its bounds are fitted state, rebuilt from the
    feature's edges: they are buffers outside the state dict, so weights saved before stay
    loadable."""

    left: torch.Tensor  # (1, bins): each bin's left edge, its width, and the bounds of its value
    width: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor

    def __init__(self, edges: list[float], *, indicator: bool) -> None:
        super().__init__()
        bins = len(edges) - 1
        left = torch.tensor(edges[:-1], dtype=torch.float64)
        width = torch.tensor(edges[1:], dtype=torch.float64) - left
        lower = [-math.inf] + [0.0] * (bins - 1)
        upper = [1.0] * (bins - 1) + [math.inf]
        self.register_buffer("left", left.float()[None, :], persistent=False)  # (1, bins)
        self.register_buffer("width", width.float()[None, :], persistent=False)
        self.register_buffer("lower", torch.tensor(lower)[None, :], persistent=False)
        self.register_buffer("upper", torch.tensor(upper)[None, :], persistent=False)
        self.indicator = indicator

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, 1 or 2) -> (batch, bins [+ 1])
        position = (x[:, :1] - self.left) / self.width  # (batch, bins)
        encoded = torch.minimum(torch.maximum(position, self.lower), self.upper)
        return torch.cat([encoded, x[:, 1:]], dim=1) if self.indicator else encoded
