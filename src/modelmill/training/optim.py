"""Optimisers and learning-rate schedulers, each registered by its YAML ``type:`` name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim import lr_scheduler

from modelmill.registry import Registry

Params = Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]  # weights, or groups with their own lr
OptimizerBuilder = Callable[[Any, Params], torch.optim.Optimizer]

OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")

OPTIMIZERS.add("sgd", lambda c, p: torch.optim.SGD(
    p, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0, weight_decay=c.weight_decay))
OPTIMIZERS.add("adam", lambda c, p: torch.optim.Adam(p, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay))
OPTIMIZERS.add("adamw", lambda c, p: torch.optim.AdamW(p, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay))
OPTIMIZERS.add("adagrad", lambda c, p: torch.optim.Adagrad(p, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.add("rmsprop", lambda c, p: torch.optim.RMSprop(
    p, lr=c.lr, momentum=c.momentum, alpha=c.alpha, weight_decay=c.weight_decay))


@dataclass
class Schedule:
    """A scheduler and when it steps: after every batch, every epoch, or on the valid loss."""

    scheduler: Any
    step: Literal["batch", "epoch", "metric"]


SchedulerBuilder = Callable[[Any, torch.optim.Optimizer, int, int], Schedule | None]
SCHEDULERS: Registry[SchedulerBuilder] = Registry("scheduler")

SCHEDULERS.add("none", lambda c, o, epochs, steps: None)
SCHEDULERS.add("onecycle", lambda c, o, epochs, steps: Schedule(
    lr_scheduler.OneCycleLR(
        o, max_lr=[g["lr"] * c.max_lr_factor for g in o.param_groups],
        epochs=epochs, steps_per_epoch=max(steps, 1), pct_start=c.pct_start),
    "batch"))
SCHEDULERS.add("cosine", lambda c, o, epochs, steps: Schedule(
    lr_scheduler.CosineAnnealingLR(o, T_max=epochs * max(steps, 1), eta_min=c.min_lr), "batch"))
SCHEDULERS.add("step", lambda c, o, epochs, steps: Schedule(
    lr_scheduler.StepLR(o, step_size=c.step_size, gamma=c.gamma), "epoch"))
SCHEDULERS.add("plateau", lambda c, o, epochs, steps: Schedule(
    lr_scheduler.ReduceLROnPlateau(o, factor=c.factor, patience=c.patience), "metric"))
