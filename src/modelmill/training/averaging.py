"""An exponential moving average of the weights (``training.ema``): validated, kept and saved
in place of the last step's weights.

The average of the recent iterates sits closer to the optimum than any one noisy iterate:
with differentially private training, whose every step adds noise to the gradient, it
removes part of that noise at no privacy cost (it only post-processes the private weights;
De et al., 2022, "Unlocking High-Accuracy Differentially Private Image Classification through
Scale"); without privacy it evens out the last epochs' steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from modelmill.errors import ModelError

WARM_UP = 10  # the decay ramps up as (1 + step) / (WARM_UP + step): early averages do not hold on to the init


class WeightAverage:
    """The average of what a model's optimiser steps change (its trainable parameters, and the
    float buffers of the modules that hold them), updated after each step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model, self.decay = model, decay
        self.steps = 0
        # What the steps can change: trainable parameters, and the float buffers (batch norm's
        # statistics) of the modules that hold them; a frozen encoder is left out (averaging a
        # transformer that never moves would cost more than the step). state_dict's tensors
        # share their storage with the live weights: read in place each step.
        changing = {name for name, p in model.named_parameters() if p.requires_grad}
        for prefix, module in model.named_modules():
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                changing |= {f"{prefix}.{name}" if prefix else name for name, _ in module.named_buffers(recurse=False)}
        self._live = {name: t for name, t in model.state_dict().items() if name in changing and t.is_floating_point()}
        self.average = {name: t.detach().clone() for name, t in self._live.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (WARM_UP + self.steps))
        torch._foreach_lerp_(list(self.average.values()), list(self._live.values()), 1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the block (to validate them, keep them as the
        best), the live ones back after it."""
        live = {name: t.detach().clone() for name, t in self._live.items()}
        self.model.load_state_dict(self.average, strict=False)
        try:
            yield
        finally:
            self.model.load_state_dict(live, strict=False)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "average": self.average}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A checkpoint's average; one of other weights (another model or another training.ema
        setting) is a clear error."""
        names = set(state["average"])
        if names != set(self.average):
            raise ModelError(f"the checkpoint's weight average holds other weights than this model trains "
                             f"({len(names ^ set(self.average))} differ): it was written by another config. Fix: "
                             "train without --resume, or resume with the config that started the run")
        self.steps = int(state["steps"])
        for name, tensor in state["average"].items():
            self.average[name].copy_(tensor)
