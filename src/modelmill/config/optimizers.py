"""The optimisers and learning-rate schedulers of ``training:``, each chosen by ``type:``
(discriminated unions: a wrong ``type`` lists the valid ones)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modelmill.config.section import Section


class SGDConfig(Section):
    type: Literal["sgd"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)


class AdamConfig(Section):
    type: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)


class AdamWConfig(Section):
    type: Literal["adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(1e-4, ge=0)


class AdagradConfig(Section):
    type: Literal["adagrad"] = "adagrad"
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class RMSpropConfig(Section):
    type: Literal["rmsprop"] = "rmsprop"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    alpha: float = Field(0.99, gt=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


OptimizerConfig = Annotated[
    SGDConfig | AdamConfig | AdamWConfig | AdagradConfig | RMSpropConfig,
    Field(discriminator="type"),
]


class NoSchedulerConfig(Section):
    type: Literal["none"] = "none"


class OneCycleConfig(Section):
    """One-cycle policy (Smith & Topin, 2017): warm up to `max_lr_factor` × lr, then anneal."""

    type: Literal["onecycle"] = "onecycle"
    max_lr_factor: float = Field(2.0, ge=1, description="Peak learning rate = optimizer lr × this.")
    pct_start: float = Field(0.3, gt=0, lt=1)


class CosineConfig(Section):
    type: Literal["cosine"] = "cosine"
    min_lr: float = Field(0.0, ge=0)


class StepConfig(Section):
    type: Literal["step"] = "step"
    step_size: int = Field(10, ge=1, description="Epochs between decays.")
    gamma: float = Field(0.1, gt=0, le=1)


class PlateauConfig(Section):
    type: Literal["plateau"] = "plateau"
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(2, ge=0)


SchedulerConfig = Annotated[
    NoSchedulerConfig | OneCycleConfig | CosineConfig | StepConfig | PlateauConfig,
    Field(discriminator="type"),
]
