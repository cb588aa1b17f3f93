"""Fitting one model whatever its kind: a learner by its own solver, a torch model by the
shared trainer (on the configured backend). The pipeline fits its model through it, and an
ensemble each of its members."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from modelmill.config.schema import TrainingConfig
from modelmill.errors import ConfigError
from modelmill.features import Target
from modelmill.models import Learner, ModelType, TensorData, TrainResult, predict_raw
from modelmill.training.backends import BACKENDS
from modelmill.training.callbacks import Callback
from modelmill.training.learners import fit_learner
from modelmill.training.streams import ALL_AT_ONCE, StreamedRows
from modelmill.training.trainer import Scorer, Trainer

log = logging.getLogger("modelmill")


@dataclass
class FitSettings:
    """What fitting any model needs besides the model and the data."""

    training: TrainingConfig
    target: Target[Any]
    scorer: Scorer
    monitor: str
    mode: Literal["max", "min"]
    callbacks: Sequence[Callback] = field(default_factory=list)
    persist_cache: bool = True
    """False for an encrypted run or bundle: frozen encoders' embeddings of its rows stay in
    memory, never in the on-disk cache (every fit the settings reach: an ensemble's members,
    a pruned model's fine-tuning)."""


# Why gbdt does not fit through Ray Train's LightGBMTrainer (LightGBM binds its peers' socket to 0.0.0.0).
LIGHTGBM_ON_RAY = ("each of its workers listens for the others on every network interface, unauthenticated, which "
                   "a cluster kept to loopback or to a private network with token authentication must not open")


def fit_model(maker: ModelType[Any], module: nn.Module, train: TensorData | StreamedRows, valid: TensorData,
              settings: FitSettings, *, checkpoint_dir: Path | None = None, resume: bool = False,
              checkpoint_key: bytes | None = None) -> TrainResult:
    """Fit ``module`` in place. The result's ``held_out_raw`` is the fitted model's raw outputs
    on ``valid`` (as they were before a learner's refit on those rows), when ``valid`` is held out.
    ``train`` streamed from the cluster (:class:`StreamedRows`) trains torch models on Ray only."""
    if isinstance(maker, Learner):
        if isinstance(train, StreamedRows):
            raise ConfigError(f"model type {getattr(maker.config, 'type', '?')!r} {ALL_AT_ONCE}", path="model.type")
        if settings.training.backend != "local":  # a learner has its own solver, not the trainer's epochs
            why = f"; not on LightGBM's distributed mode: {LIGHTGBM_ON_RAY}" \
                if getattr(maker.config, "type", None) == "gbdt" else ""
            log.info(f"training.backend: {settings.training.backend} drives torch models; this learner fits on "
                     f"this machine{why}")
        result = fit_learner(maker, module, train, valid, settings.target, settings.training, settings.scorer,
                             settings.monitor, settings.callbacks)
    else:
        trainer = Trainer(settings.training, loss=settings.target.loss(), scorer=settings.scorer,
                          monitor=settings.monitor, mode=settings.mode, checkpoint_dir=checkpoint_dir,
                          callbacks=list(settings.callbacks), checkpoint_key=checkpoint_key,
                          persist_cache=settings.persist_cache)
        backend = BACKENDS.get(settings.training.backend, path="training.backend")()
        result = backend.fit(trainer, module, train, valid, resume=resume)
    if not valid.held_out or not len(valid):
        return replace(result, held_out_raw=None, held_out_target=None)
    if result.held_out_raw is None:
        with torch.inference_mode():
            result = replace(result, held_out_raw=predict_raw(module, valid.inputs, lengths=valid.lengths).float())
    return replace(result, held_out_target=valid.target)
