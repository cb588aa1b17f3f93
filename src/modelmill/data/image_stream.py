"""Images too many to hold decoded in memory: a column that decodes its rows when they are
indexed, batch by batch, so memory stays bounded by the batch and not by the data set.

``LazyImages`` stands where a uint8 tensor (rows, channels, height, width) would: it has a
``shape``, indexes by an index tensor or a slice, and moves to a device as itself (the
decoded batch moves instead). The trainer hands its batches to loader worker processes,
which decode the next batches while the model trains on this one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from modelmill.data.image_values import load_pixels


class LazyImages:
    """Image cells (paths, bytes or arrays) decoded on demand to (n, channels, h, w) uint8."""

    dtype = torch.uint8

    def __init__(self, cells: list[Any], *, size: tuple[int, int], channels: int, max_pixels: int,
                 fill: np.ndarray, name: str) -> None:
        self.cells = cells
        self.size, self.channels, self.max_pixels = size, channels, max_pixels
        self.fill, self.name = fill, name

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.cells), self.channels, *self.size)

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        if isinstance(index, slice):
            chosen = self.cells[index]
        else:
            chosen = [self.cells[i] for i in index.cpu().tolist()]
        pixels = load_pixels(pd.Series(chosen, dtype=object, name=self.name), size=self.size,
                             channels=self.channels, max_pixels=self.max_pixels, fill=self.fill)
        return torch.from_numpy(pixels)

    def to(self, device: torch.device | str) -> LazyImages:
        return self  # decoding is the CPU's work; each decoded batch is moved instead


def is_lazy(x: object) -> bool:
    return isinstance(x, LazyImages)
