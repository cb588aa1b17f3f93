"""The piecewise-linear encoding of a number (Gorishniy et al., 2022) as a module of the
model: the value's bin coordinate in, one value per quantile bin out (1 for bins left of the
value, its position inside its own bin, 0 right of it; the outer bins extend linearly beyond
the training range).

The encoding runs per batch inside the model rather than in ``transform``, so that the
tensors of a table hold one value per number, not one per bin (16 by default): that much
less memory on the machine that trains and in a cluster's object store.

``transform`` gives the coordinate ``u`` = the bin's number + the position inside it, found
in float64 by the bin search. Bin ``j``'s value is then ``clamp(u - j, lower, upper)``, with
bounds 0 and 1 except below the first bin and above the last (unbounded there): the values
the bin search gives, up to float32 rounding of ``u`` (about 1e-6 with 16 bins), made of
element-wise operations that every runtime (ONNX included) has.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PiecewiseLinear(nn.Module):
    """(batch, 1) bin coordinates, or (batch, 2) with the missing indicator after them →
    (batch, bins) or (batch, bins + 1). Its constants come from the number of bins: they are
    buffers outside the state dict, so weights saved before stay loadable."""

    start: torch.Tensor  # (1, bins): each bin's number, and the bounds of its value
    lower: torch.Tensor
    upper: torch.Tensor

    def __init__(self, bins: int, *, indicator: bool) -> None:
        super().__init__()
        lower = [-math.inf] + [0.0] * (bins - 1)
        upper = [1.0] * (bins - 1) + [math.inf]
        self.register_buffer("start", torch.arange(bins, dtype=torch.float32)[None, :], persistent=False)
        self.register_buffer("lower", torch.tensor(lower)[None, :], persistent=False)
        self.register_buffer("upper", torch.tensor(upper)[None, :], persistent=False)
        self.indicator = indicator

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, 1 or 2) -> (batch, bins [+ 1])
        encoded = torch.minimum(torch.maximum(x[:, :1] - self.start, self.lower), self.upper)  # (batch, bins)
        return torch.cat([encoded, x[:, 1:]], dim=1) if self.indicator else encoded
