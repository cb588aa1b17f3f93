"""Which rows go into which batch: the default sampler (a seeded shuffle per epoch, rows of
similar length together), and the hand-over of batches to loader workers when some input
is decoded on demand. A different sampler (Poisson sampling for differential privacy, say)
plugs in through :class:`BatchSampler`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from modelmill.data.image_stream import is_lazy
from modelmill.models import TensorData

Batch = tuple[list[torch.Tensor], torch.Tensor]


class BatchSampler(Protocol):
    """The row indices of each batch of one epoch."""

    def __call__(self, data: TensorData, epoch: int, batch_size: int) -> list[torch.Tensor]: ...


def steps_per_epoch(rows: int, batch_size: int) -> int:
    full, rest = divmod(rows, batch_size)
    return full + (1 if rest >= 2 else 0)  # a last batch of one row would break batch norm


class ShuffledBatches:
    """Every epoch draws from its own seed, so a resumed run replays exactly what an
    uninterrupted one would have done, with no RNG state to save. Rows of sequence inputs
    are bucketed by length."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, data: TensorData, epoch: int, batch_size: int) -> list[torch.Tensor]:
        torch.manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(data), device=data.target.device)
        if data.lengths is not None:
            order = bucket_by_length(order, data.lengths, batch_size)
        return [order[step * batch_size:(step + 1) * batch_size]
                for step in range(steps_per_epoch(len(data), batch_size))]


class PoissonBatches:
    """Poisson sampling, as differentially private SGD's analysis assumes (Abadi et al., 2016):
    each row joins each batch independently with probability q = batch_size / rows, so a batch
    holds batch_size rows on average and may hold none. An epoch has as many steps as the
    shuffled sampler's (the learning-rate schedule is sized on them). Every epoch draws from its
    own seed, like :class:`ShuffledBatches`, so a resumed run draws the same batches."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, data: TensorData, epoch: int, batch_size: int) -> list[torch.Tensor]:
        torch.manual_seed(self.seed * 100_003 + epoch)  # also seeds the epoch's dropout, as the shuffle does
        rows = len(data)
        rate = min(1.0, batch_size / rows)
        device = data.target.device
        return [torch.nonzero(torch.rand(rows) < rate).squeeze(1).to(device)
                for _ in range(steps_per_epoch(rows, batch_size))]


def bucket_by_length(order: torch.Tensor, lengths: torch.Tensor, batch_size: int, pool: int = 50) -> torch.Tensor:
    """A shuffled order whose batches hold rows of similar length: each run of ``pool``
    batches is sorted by length and cut into batches, and the batches are shuffled. Encoders
    trim the padding shared by a whole batch, so this cuts the padded work several-fold."""
    pieces: list[torch.Tensor] = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        pieces.extend(torch.split(chunk, batch_size))
    shuffled = torch.randperm(len(pieces)).tolist()
    return torch.cat([pieces[i] for i in shuffled]) if pieces else order


def batches(data: TensorData, indices: list[torch.Tensor], workers: int) -> Iterator[Batch]:
    """The batches in order: taken from the tensors, or, when some input streams (images
    decoded on demand), decoded by ``workers`` loader processes a few batches ahead."""
    if not any(is_lazy(x) for x in data.inputs):
        return (data.take(index) for index in indices)
    loader: DataLoader[Batch] = DataLoader(_Batches(data, [b.cpu() for b in indices]), batch_size=None,
                                           shuffle=False, num_workers=workers,
                                           prefetch_factor=4 if workers else None,
                                           pin_memory=data.target.device.type == "cuda")
    return iter(loader)


class _Batches(Dataset[Batch]):
    """Batch ``i`` of an epoch, for a DataLoader whose workers decode streamed inputs."""

    def __init__(self, data: TensorData, indices: list[torch.Tensor]) -> None:
        self.data = TensorData([x if is_lazy(x) else x.cpu() for x in data.inputs], data.target.cpu())
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Batch:
        return self.data.take(self.indices[i])


def resolve_batch_size(setting: int | str, rows: int) -> int:
    """``auto``: rows / 32 rounded down to a power of two, clamped to 16..256."""
    if isinstance(setting, int):
        return setting
    if rows < 32 * 16:
        return 16
    return min(256, 2 ** int(math.log2(rows / 32)))
