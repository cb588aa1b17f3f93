"""Training rows that stay on the cluster (``data.shards``): the driver holds a
:class:`StreamedRows` (a Ray Dataset of the model's inputs and target, one column each), Ray
Train splits it among the workers (``streaming_split`` with ``equal=True``: every rank gets
the same number of rows, so the same number of steps), and each worker's trainer iterates
its share batch by batch (:class:`ShardStream`), never holding more than a shuffle buffer of
it (and the blocks Ray reads ahead). Rows are shuffled within that buffer, not over the whole table as one machine does.

Ray is imported inside the methods: this module is imported where Ray may be missing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

TARGET = "target"
ALL_AT_ONCE = ("fits on all training rows at once, which rows in shards (data.shards) never are. Fix: model type "
               "mlp or linear, or data.shards: false")  # why learners and ensembles cannot take a stream
SHUFFLE_ROWS = 50_000  # rows a worker shuffles among: ~7 MB for 32 numbers


def input_column(position: int) -> str:
    return f"input_{position}"


@dataclass(frozen=True)
class StreamSpec:
    """What a worker needs to read its share (the dataset itself reaches it through Ray Train)."""

    rows: int  # in the whole stream
    inputs: int  # model inputs per row
    shuffle_rows: int = SHUFFLE_ROWS


@dataclass(frozen=True)
class StreamedRows:
    """The training rows as a materialised Ray Dataset with the columns ``input_0`` ... and
    ``target``; stands where a :class:`TensorData` of training rows goes (the ray backend)."""

    dataset: Any
    spec: StreamSpec

    def __len__(self) -> int:
        return self.spec.rows

    def to(self, device: torch.device) -> StreamedRows:
        return self  # its batches go to the device one at a time, in the trainer's step


class ShardStream:
    """One worker's share of a stream, batch by batch, as the trainer's epoch takes them."""

    def __init__(self, iterator: Any, spec: StreamSpec, *, rank: int, world: int, seed: int) -> None:
        self.iterator, self.spec = iterator, spec
        self.rank, self.world, self.seed = rank, world, seed

    def __len__(self) -> int:
        return self.spec.rows // self.world  # equal=True: every rank gets as many, the remainder is left out

    def to(self, device: torch.device) -> ShardStream:
        return self

    def batches(self, epoch: int, batch_size: int) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        """This epoch's batches: ``batch_size`` rows each, shuffled within a buffer with a seed of
        the epoch and rank, as many as the schedule counts (``steps_per_epoch``: a last batch of
        one row is left out, as on one machine). Before each step the ranks check that every one
        of them has a batch (a rank that stepped alone would leave the others waiting in DDP
        forever); Ray's equal split makes that always so, the check keeps it from hanging if not."""
        from modelmill.training.batches import steps_per_epoch

        steps = steps_per_epoch(len(self), batch_size)
        found = iter(self.iterator.iter_torch_batches(
            batch_size=batch_size, local_shuffle_buffer_size=min(self.spec.shuffle_rows, max(len(self), 1)),
            local_shuffle_seed=self.seed + epoch * self.world + self.rank, drop_last=False))
        names = [input_column(i) for i in range(self.spec.inputs)]
        for _ in range(steps):
            batch = next(found, None)
            if not _all_have(batch is not None) or batch is None:  # every rank stops at the same step
                return
            yield [batch[name] for name in names], batch[TARGET]


def _all_have(mine: bool) -> bool:
    """Whether every rank has a batch (a collective call)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return mine
    flag = torch.tensor([1.0 if mine else 0.0], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
