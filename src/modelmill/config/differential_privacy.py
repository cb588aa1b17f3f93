"""Config of differentially private training (DP-SGD through Opacus): ``training.privacy``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from modelmill.config.section import Section


class DifferentialPrivacyConfig(Section):
    """DP-SGD (Abadi et al., 2016) for the torch model types (linear, mlp) with no recurrent or attention encoder.

    Every row's gradient is clipped to `max_grad_norm`, Gaussian noise added to each step's sum,
    rows drawn into batches by Poisson sampling, and the noise set so that the planned epochs
    spend at most (`epsilon`, `delta`). Needs `pip install 'modelmill[privacy]'` to train, not
    to predict."""

    epsilon: float = Field(
        description="The privacy budget ε the whole training may spend (smaller: more private, more noise; "
        "1 to 8 is the usual range). The noise is calibrated so that the planned epochs end at most here; "
        "early stopping spends less.")
    delta: float = Field(
        1e-5, gt=0, lt=1, description="The δ of (ε, δ)-differential privacy: the chance the ε bound fails; "
        "keep it well under 1 / training rows.")
    max_grad_norm: float = Field(
        1.0, gt=0, description="Each row's gradient is clipped to this L2 norm before the noise is added "
        "(the noise scales with it).")
    accountant: Literal["prv", "rdp"] = Field(
        "prv", description="How the spent ε is computed: prv (privacy random variables, Gopi et al. 2021: the "
        "tightest bound, so the least noise for a target ε; Opacus's default; a few seconds to calibrate) or "
        "rdp (Rényi DP, Mironov 2017: fast, a somewhat looser bound).")

    @field_validator("epsilon")
    @classmethod
    def _positive_epsilon(cls, value: float) -> float:
        if not value > 0:  # also refuses NaN
            raise ValueError(f"epsilon must be above 0, got {value!r}: it is the privacy budget training may "
                             "spend (smaller is more private; 1 to 8 is usual)")
        return value
