"""Differentially private training (DP-SGD, Abadi et al. 2016) through Opacus, as a callback of
the shared trainer: per-row gradients (Opacus's ``GradSampleModule`` hooks), each clipped to
``max_grad_norm``, Gaussian noise on their sum (``DPOptimizer``), batches drawn by Poisson
sampling, and an accountant that follows every step. The noise is calibrated before the first
epoch so that the planned epochs spend at most the target (ε, δ); each epoch's history row gets
the ε spent so far. Opacus is imported only here, when a private run trains: the bundle it
writes is a plain module that loads and serves without it.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from modelmill.config.differential_privacy import DifferentialPrivacyConfig
from modelmill.errors import ConfigError, ModelError
from modelmill.training.batches import PoissonBatches, steps_per_epoch
from modelmill.training.callbacks import Callback, LoopState

if TYPE_CHECKING:
    from modelmill.training.trainer import TrainingRun

INSTALL_HINT = "pip install 'modelmill[privacy]'"


@dataclass(frozen=True)
class PrivacyPlan:
    """The noise of a private run, fixed before its first epoch from the target (ε, δ)."""

    noise_multiplier: float  # σ: the noise's standard deviation over max_grad_norm
    sample_rate: float  # q: each row's chance to join a batch
    expected_batch_size: int
    steps_per_epoch: int
    planned_epochs: int


def opacus_modules() -> tuple[Any, Any, Any, Any]:
    """Opacus's GradSampleModule, DPOptimizer, create_accountant and get_noise_multiplier, or a
    ModelError with the install hint."""
    try:
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer
    except ImportError as exc:
        raise ModelError(f"training.privacy needs Opacus, which is not installed ({exc}). Fix: {INSTALL_HINT}") \
            from None
    return GradSampleModule, DPOptimizer, create_accountant, get_noise_multiplier


def plan_noise(config: DifferentialPrivacyConfig, *, rows: int, batch_size: int, epochs: int) -> PrivacyPlan:
    """σ for the target (ε, δ) at q = batch_size / rows over ``epochs`` epochs of the trainer's steps
    (Opacus's ``get_noise_multiplier``, a binary search on the accountant's ε)."""
    rate = min(1.0, batch_size / rows)
    steps = steps_per_epoch(rows, batch_size)
    try:
        sigma = _noise_multiplier(config.epsilon, config.delta, rate, epochs * steps, config.accountant)
    except ValueError as exc:  # "The privacy budget is too low."
        raise ConfigError(f"epsilon {config.epsilon:g} cannot be met over {epochs} epochs of {steps} steps at "
                          f"sample rate {rate:.4g} ({exc}). Fix: a larger epsilon, fewer epochs or a smaller "
                          "batch size", path="training.privacy.epsilon") from None
    return PrivacyPlan(sigma, rate, max(1, round(rate * rows)), steps, epochs)


@functools.lru_cache(maxsize=64)
def _noise_multiplier(epsilon: float, delta: float, rate: float, steps: int, accountant: str) -> float:
    """Kept per process: the search takes a second or more (the RDP accountant's fractional orders
    are pure Python), and a resumed or repeated run asks the same question."""
    *_, get_noise_multiplier = opacus_modules()
    with warnings.catch_warnings():  # the RDP accountant warns when its orders of α run out mid-search
        warnings.simplefilter("ignore")
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=rate,
                                          steps=steps, accountant=accountant))


def _private_optimizer(optimizer: torch.optim.Optimizer, plan: PrivacyPlan, max_grad_norm: float) -> Any:
    """Opacus's DPOptimizer around ``optimizer``; an empty Poisson batch gets the noise-only step
    the privacy analysis counts (per-row gradients of no rows), as Opacus's own data loader does.
    The noise comes from a generator seeded by the operating system, never from training.seed:
    noise that can be regenerated from the config would protect nothing."""
    _, dp_optimizer, _, _ = opacus_modules()

    class EmptyBatchAware(dp_optimizer):  # type: ignore[misc, valid-type]
        def pre_step(self, closure: Any = None) -> Any:
            if all(p.grad_sample is None for p in self.params):  # no rows: nothing ran backward
                for p in self.params:
                    p.grad_sample = p.new_zeros((0, *p.shape))
            return super().pre_step(closure)

    device = optimizer.param_groups[0]["params"][0].device
    generator = torch.Generator(device=device)
    generator.seed()
    return EmptyBatchAware(optimizer, noise_multiplier=plan.noise_multiplier, max_grad_norm=max_grad_norm,
                           expected_batch_size=plan.expected_batch_size, loss_reduction="mean", generator=generator)


class DifferentialPrivacy(Callback):
    """Makes the trainer's run DP-SGD: per-row gradients, clipping, noise, Poisson batches, and
    the spent ε in each epoch's row (``epsilon``). ``summary()`` gives what the run spent."""

    def __init__(self, config: DifferentialPrivacyConfig, *, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.plan_: PrivacyPlan | None = None
        self.accountant_: Any = None
        self._hooks: Any = None
        self._quiet: warnings.catch_warnings[None] | None = None

    def on_prepare(self, run: TrainingRun) -> None:
        if run.state.phase != "train":
            raise ConfigError("a pretrained encoder's head_epochs warm-up cannot be combined with differential "
                              "privacy (its steps would need an accounting of their own). Fix: head_epochs: 0, "
                              "or tune: frozen", path="training.privacy")
        grad_sample_module, _, create_accountant, _ = opacus_modules()
        config = self.config
        plan = plan_noise(config, rows=len(run.train), batch_size=run.batch_size, epochs=run.epochs)
        try:
            # Hooks on the module's own layers: run.model stays the plain module, so its checkpoints,
            # best weights and cached frozen encoders are those of a run without privacy.
            self._hooks = grad_sample_module(run.model, batch_first=True, loss_reduction="mean", strict=True)
        except NotImplementedError as exc:  # a trainable layer with buffers
            raise ConfigError(f"the model has a layer differential privacy cannot train ({exc}). Fix: turn "
                              "training.privacy off for this model", path="training.privacy") from None
        optimizer = _private_optimizer(run.optimizer, plan, config.max_grad_norm)
        accountant = create_accountant(mechanism=config.accountant)
        done = run.state.epoch * plan.steps_per_epoch  # a resumed run: the steps of the epochs already done
        if done:
            accountant.history = [(plan.noise_multiplier, plan.sample_rate, done)]
        optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=plan.sample_rate))
        run.optimizer = optimizer
        run.sampler = PoissonBatches(self.seed)
        self.plan_, self.accountant_ = plan, accountant
        # torch warns on every step that the first layer's backward hook sees inputs without gradients
        # (the data): expected with per-row gradient hooks. Silenced for the run, restored at its end.
        self._quiet = warnings.catch_warnings()
        self._quiet.__enter__()
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        row["epsilon"] = self.spent()

    def on_train_end(self, state: LoopState) -> None:
        if self._hooks is not None:  # the plain module goes on (best weights, saving, prediction)
            self._hooks.to_standard_module()
            self._hooks = None
        if self._quiet is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None

    def steps(self) -> int:
        """Optimiser steps accounted so far (the epochs a resumed run had done included)."""
        history = self.accountant_.history if self.accountant_ is not None else []
        return int(sum(entry[2] for entry in history))

    def spent(self) -> float:
        """ε spent so far at the configured δ (0 before the first step)."""
        if self.accountant_ is None or not self.accountant_.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.accountant_.get_epsilon(delta=self.config.delta))

    def summary(self) -> dict[str, Any]:
        """What the run spent and how, for the metrics, the report and the model card."""
        plan = self.plan_
        if plan is None:
            raise ModelError("differential privacy: nothing trained yet")
        return {"epsilon": round(self.spent(), 4), "target_epsilon": self.config.epsilon, "delta": self.config.delta,
                "noise_multiplier": round(plan.noise_multiplier, 4), "max_grad_norm": self.config.max_grad_norm,
                "sample_rate": round(plan.sample_rate, 6), "expected_batch_size": plan.expected_batch_size,
                "steps": self.steps(), "planned_epochs": plan.planned_epochs, "accountant": self.config.accountant,
                "mechanism": "DP-SGD (Opacus): per-row clipping, Gaussian noise, Poisson sampling"}
