"""What models are fitted on and what fitting gives back: shared by the trainer, learners
with their own solver, and the predictor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TensorData:
    """Transformed inputs (one tensor per feature, rows first) and the target; ``lengths``
    (tokens per row) when some input is a sequence. ``held_out`` is False for validation
    data that is really the training rows (a config without a validation split)."""

    inputs: list[torch.Tensor]
    target: torch.Tensor
    lengths: torch.Tensor | None = None
    held_out: bool = True

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def take(self, index: torch.Tensor | slice) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [x[index] for x in self.inputs], self.target[index]

    def concat(self, other: TensorData, pads: dict[int, int] | None = None) -> TensorData:
        """These rows, then ``other``'s; sequence inputs (at the positions of ``pads``, with
        their padding id) are padded to the longer of the two widths first."""
        pads = pads or {}
        inputs = [_cat_rows(a, b, pads.get(i, 0)) for i, (a, b) in enumerate(zip(self.inputs, other.inputs, strict=True))]
        lengths = None if self.lengths is None or other.lengths is None else torch.cat([self.lengths, other.lengths])
        return TensorData(inputs, torch.cat([self.target, other.target]), lengths)

    def to(self, device: torch.device) -> TensorData:
        return TensorData([x.to(device) for x in self.inputs], self.target.to(device),
                          None if self.lengths is None else self.lengths.to(device), self.held_out)


@dataclass
class TrainResult:
    """The history of a fit (one row per epoch or iteration: losses, validation metrics,
    seconds) and how it ended."""

    history: list[dict[str, float]]
    best_epoch: int
    best_value: float | None
    epochs_run: int
    seconds: float  # of the epochs
    stop_reason: str
    prepare_seconds: float = 0.0  # before the first epoch: frozen encoders run over the data
    held_out_raw: torch.Tensor | None = None
    """Raw outputs on held-out rows the model did not learn from (the validation rows, before a
    refit on them; an ensemble's out-of-fold rows), with their transformed target in
    ``held_out_target``: where thresholds, calibration and ensemble weights are chosen."""
    held_out_target: torch.Tensor | None = None
    members: list[dict[str, Any]] = field(default_factory=list)
    """An ensemble's candidates: name, folds, seconds, held-out score, weight, what became of it."""
    worker_peak_rss: int | None = None
    """Training on Ray: the largest peak resident memory of any worker process, in bytes (with the
    shared pages of Ray's object store it mapped)."""
    worker_peak_private: int | None = None
    """Training on Ray: the largest private resident memory sampled in any worker, in bytes."""


def _cat_rows(a: torch.Tensor, b: torch.Tensor, pad: int) -> torch.Tensor:
    if a.dim() == 2 and b.dim() == 2 and a.shape[1] != b.shape[1]:  # token ids padded to each part's longest
        width = max(a.shape[1], b.shape[1])
        a = torch.nn.functional.pad(a, (0, width - a.shape[1]), value=pad)
        b = torch.nn.functional.pad(b, (0, width - b.shape[1]), value=pad)
    return torch.cat([a, b])
