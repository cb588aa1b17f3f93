"""The contract between an encoder with pretrained weights and the trainer.

An encoder that subclasses :class:`TunableEncoder` carries a :class:`Tuning` plan; the
trainer reads it (and only it) to decide whether the encoder's outputs can be computed
once and cached, whether the rest of the model first trains alone on those outputs, and
at which learning rate the encoder's own weights learn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn


@dataclass
class Tuning:
    """How the trainer treats one encoder.

    Attributes:
        frozen: its weights do not learn and its output depends on its input alone, so the
            trainer computes the output once per data set (and keeps it on disk).
        head_epochs: epochs in which the rest of the model trains alone on the frozen
            encoder's cached outputs before the encoder itself is tuned (linear probing,
            then fine-tuning: Kumar et al., 2022). 0: no such warm-up.
        lr_scale: the encoder's weights learn at the optimiser's rate times this.
        cache_key: the settings besides the weights that change the output (pooling,
            padding id …), part of the key of the cached outputs.
    """

    frozen: bool = False
    head_epochs: int = 0
    lr_scale: float = 1.0
    cache_key: str = ""


class TunableEncoder(nn.Module):
    """An encoder tuned by its :class:`Tuning` plan (a pretrained sentence encoder, say)."""

    def __init__(self, tuning: Tuning) -> None:
        super().__init__()
        self.tuning = tuning

    @property
    def frozen(self) -> bool:
        return self.tuning.frozen

    def train(self, mode: bool = True) -> TunableEncoder:
        # A frozen encoder gives the same vectors in training as at prediction (no dropout),
        # which is also what makes its cached outputs valid.
        super().train(mode and not self.tuning.frozen)
        return self


@contextmanager
def held_frozen(encoders: Sequence[TunableEncoder]) -> Iterator[None]:
    """Within the block the encoders are frozen (their weights do not learn and their
    outputs may be cached); afterwards each weight learns again exactly as before."""
    learning = {id(p): p.requires_grad for encoder in encoders for p in encoder.parameters()}
    plans = [encoder.tuning.frozen for encoder in encoders]
    for encoder in encoders:
        encoder.tuning.frozen = True
        encoder.requires_grad_(False)
    try:
        yield
    finally:
        for encoder, frozen in zip(encoders, plans, strict=True):
            encoder.tuning.frozen = frozen
            for parameter in encoder.parameters():
                parameter.requires_grad_(learning[id(parameter)])
